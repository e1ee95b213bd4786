-- Drops what 0009_flow_claim_function added.
DROP FUNCTION IF EXISTS {schema}.flow_claim(text, double precision, text[], integer);
