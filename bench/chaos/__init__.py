"""The fault-injection run behind `bench/chaos.py` (see docs/reliability.md).

proxy: the TCP proxy that black-holes links; servers: PostgreSQL, redis-server and moto that
can be stopped, crashed and started; app: the worker and producer processes; procs and
cluster: running them; faults and garbage: injecting; check and report: the verdict.
"""
