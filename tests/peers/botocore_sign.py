"""Signs requests with botocore's SigV4Auth, an implementation independent of lattice-xds.

Reads one JSON document on stdin:
  {"access_key", "secret_key", "token" (or null), "region", "service", "timestamp"
   ("YYYYMMDDTHHMMSSZ"), "requests": [{"method", "authority", "path", "params": [[k, v], ...],
   "headers": [[name, value], ...]}, ...]}
and prints a JSON list with the Authorization header botocore computes for each request.
The payload is declared unsigned (x-amz-content-sha256: UNSIGNED-PAYLOAD), as VPC Lattice
requires.
"""
import datetime
import json
import sys

import botocore.auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


def main():
    job = json.load(sys.stdin)
    fixed = datetime.datetime.strptime(job["timestamp"], "%Y%m%dT%H%M%SZ")
    botocore.auth.get_current_datetime = lambda *args, **kwargs: fixed
    credentials = Credentials(job["access_key"], job["secret_key"], job.get("token"))
    signer = botocore.auth.SigV4Auth(credentials, job["service"], job["region"])
    answers = []
    for spec in job["requests"]:
        request = AWSRequest(
            method=spec["method"],
            url="https://" + spec["authority"] + spec["path"],
            params=[tuple(pair) for pair in spec["params"]],
        )
        for name, value in spec["headers"]:
            # HTTPHeaders appends: repeated names keep every value, in order.
            request.headers[name] = value
        request.headers["X-Amz-Content-SHA256"] = "UNSIGNED-PAYLOAD"
        signer.add_auth(request)
        answers.append(request.headers["Authorization"])
    json.dump(answers, sys.stdout)


if __name__ == "__main__":
    main()
