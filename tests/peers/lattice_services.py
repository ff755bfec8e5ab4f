"""Registers VPC Lattice resources in moto through botocore, as the AWS Gateway API Controller
(or a service owner in another account) would: a VPC, service networks associated with it,
services with their listeners and auth policies, and their service network associations.

Reads one JSON document on stdin:
  {"endpoint", "region", "vpc" (a CIDR: create a VPC; or an existing VPC id; or null),
   "networks": [{"name", "auth": "NONE" | "AWS_IAM", "policy": {...} or null}],
   "services": [{"name", "custom_domain" or null, "auth", "policy" or null,
                 "listeners": [["HTTPS" | "HTTP" | "TLS_PASSTHROUGH", port], ...],
                 "networks": [network name, ...]}]}
and prints {"vpc": id, "networks": {name: {"id", "arn"}},
            "services": {name: {"id", "arn", "dns"}}}.
Networks and services that already exist (by name) are reused, so a second run only adds.
"""
import json
import sys

import botocore.session


def main():
    job = json.load(sys.stdin)
    session = botocore.session.get_session()

    def client(service):
        return session.create_client(
            service,
            endpoint_url=job["endpoint"],
            region_name=job["region"],
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    lattice = client("vpc-lattice")
    vpc = job.get("vpc")
    if vpc and not vpc.startswith("vpc-"):
        vpc = client("ec2").create_vpc(CidrBlock=vpc)["Vpc"]["VpcId"]

    existing_networks = {n["name"]: n for n in lattice.list_service_networks()["items"]}
    networks = {}
    for spec in job.get("networks", []):
        network = existing_networks.get(spec["name"])
        if network is None:
            network = lattice.create_service_network(
                name=spec["name"], authType=spec.get("auth", "NONE")
            )
            if spec.get("policy"):
                lattice.put_auth_policy(
                    resourceIdentifier=network["arn"], policy=json.dumps(spec["policy"])
                )
            if vpc:
                lattice.create_service_network_vpc_association(
                    serviceNetworkIdentifier=network["id"], vpcIdentifier=vpc
                )
        networks[spec["name"]] = {"id": network["id"], "arn": network["arn"]}

    existing_services = {s["name"]: s for s in lattice.list_services()["items"]}
    services = {}
    for spec in job.get("services", []):
        service = existing_services.get(spec["name"])
        if service is None:
            arguments = {"name": spec["name"], "authType": spec.get("auth", "NONE")}
            if spec.get("custom_domain"):
                arguments["customDomainName"] = spec["custom_domain"]
            service = lattice.create_service(**arguments)
            if spec.get("policy"):
                lattice.put_auth_policy(
                    resourceIdentifier=service["arn"], policy=json.dumps(spec["policy"])
                )
            for protocol, port in spec.get("listeners", []):
                lattice.create_listener(
                    serviceIdentifier=service["id"],
                    name=f"{protocol.lower().replace('_', '-')}-{port}",
                    protocol=protocol,
                    port=port,
                    defaultAction={"fixedResponse": {"statusCode": 404}},
                )
            for name in spec.get("networks", []):
                lattice.create_service_network_service_association(
                    serviceIdentifier=service["id"],
                    serviceNetworkIdentifier=networks[name]["id"],
                )
        services[spec["name"]] = {
            "id": service["id"],
            "arn": service["arn"],
            "dns": service["dnsEntry"]["domainName"],
        }
    json.dump({"vpc": vpc, "networks": networks, "services": services}, sys.stdout)


main()
