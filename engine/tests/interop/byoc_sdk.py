"""Submits a BYOC job with Livepeer's Python SDK (`livepeer_gateway.byoc`), for Sluice's
interop tests: off-chain, to the URL given (a Sluice gateway or orchestrator).

    python byoc_sdk.py URL CAPABILITY TEXT

Prints one JSON object: the reply's data, status, Livepeer-Balance and the URL that ran it,
or the error the SDK raised.
"""
import json
import sys

from livepeer_gateway.byoc import ByocJobRequest, submit_byoc_job

url, capability, text = sys.argv[1], sys.argv[2], sys.argv[3]
try:
    r = submit_byoc_job(ByocJobRequest(capability=capability, payload={"text": text}, timeout_seconds=20), orch_url=url)
    print(json.dumps({"data": r.data, "status": r.status_code, "balance": r.balance, "orchestrator": r.orchestrator_url}))
except Exception as e:
    print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
