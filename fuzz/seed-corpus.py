#!/usr/bin/env python3
"""Seeds fuzz/corpus/<target> from the repository's fixtures (run from anywhere)."""
import glob
import json
import os

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(here)
corpus = os.path.join(here, "corpus")
for t in ("signature", "webhook_parse", "host_envelope", "pools_file"):
    os.makedirs(os.path.join(corpus, t), exist_ok=True)


def put(target, name, data):
    with open(os.path.join(corpus, target, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


# webhook_parse: a flags byte (bit 0 signed, bits 1-2 event, 3-4 content type, 5 strict
# config, 6 wrong secret), then the body.
for i, f in enumerate(sorted(glob.glob(f"{root}/tests/fixtures/github-webhooks/*payload.json"))):
    body = open(f, "rb").read()
    for flag in (0x01, 0x21, 0x00):
        put("webhook_parse", f"seed-{i}-{flag:02x}", bytes([flag]) + body)
for i, f in enumerate(sorted(glob.glob(f"{root}/tests/fixtures/azure-functions/custom-handler-*.json"))):
    put("host_envelope", f"seed-{i}", open(f, "rb").read())
msg = {"v": 1, "kind": "provision", "job_id": 7, "run_id": 9, "repository": "o/r", "owner": "o",
       "installation_id": 3, "labels": ["linux"], "pool": "p", "runner_name": "ghr-7", "delivery_id": "d",
       "job_created_at": "2026-01-01T00:00:00Z"}
put("host_envelope", "seed-msg", json.dumps({"Data": {"message": json.dumps(msg)},
                                             "Metadata": {"DequeueCount": "2", "Id": "x"}}))
put("host_envelope", "seed-msg2", json.dumps(json.dumps(json.dumps(msg))))
put("pools_file", "seed-example", open(f"{root}/runners.example.toml", "rb").read())
# The pools the tests use (runner_dispatch::testing::POOLS).
put("pools_file", "seed-tests", open(f"{root}/tests/fixtures/pools/octokit.toml", "rb").read())
