"""Run the Python blocks of one docs page in order, in one namespace, as a reader would.

Reads `[{"where": "page.md:LINE", "source": "..."}]` as JSON from stdin. A block may use
top-level `await`; such blocks run on one event loop kept for the whole page. Exits 1 with the
failing block's place and traceback on stderr.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import json
import sys
import traceback


def main() -> int:
    blocks = json.load(sys.stdin)
    namespace: dict[str, object] = {"__name__": "__main__"}
    loop = asyncio.new_event_loop()
    try:
        for block in blocks:
            try:
                code = compile(
                    block["source"], block["where"], "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
                )
                result = eval(code, namespace)  # noqa: S307  (the docs' own code blocks)
                if code.co_flags & inspect.CO_COROUTINE:
                    loop.run_until_complete(result)
            except BaseException:  # report any failure, SystemExit included
                sys.stderr.write(f"the block at {block['where']} failed:\n")
                traceback.print_exc()
                return 1
    finally:
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
