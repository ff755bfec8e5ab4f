"""Plays the AWS Gateway API Controller of each cluster: reads Gateway API manifests (Gateways,
HTTPRoutes, GRPCRoutes, IAMAuthPolicies) and prints, as a job for lattice_services.py, the VPC
Lattice resources the controller creates for them:

  - a Gateway is a service network of the same name; an IAMAuthPolicy on it makes the network
    AWS_IAM with that policy;
  - a route is a service named ROUTE-NAMESPACE, with its first host name as custom domain, a
    listener per Gateway listener it attaches to (a GRPCRoute only on HTTPS), associated with
    its Gateways' networks; an IAMAuthPolicy on it makes the service AWS_IAM with that policy.

Usage: gateway_routes.py ENDPOINT REGION VPC DIR...   (VPC: a CIDR to create the VPC, or its id)
"""
import json
import pathlib
import sys

import yaml


def main():
    endpoint, region, vpc, dirs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    objects = []
    for directory in dirs:
        for path in sorted(pathlib.Path(directory).glob("*.yaml")):
            objects += [o for o in yaml.safe_load_all(path.read_text()) if o]

    def key(kind, metadata):
        return (kind, metadata.get("namespace", "default"), metadata["name"])

    policies = {}
    for policy in (o for o in objects if o["kind"] == "IAMAuthPolicy"):
        target = policy["spec"]["targetRef"]
        namespace = target.get("namespace", policy["metadata"].get("namespace", "default"))
        policies[(target["kind"], namespace, target["name"])] = json.loads(policy["spec"]["policy"])

    gateways, networks = {}, {}
    for gateway in (o for o in objects if o["kind"] == "Gateway"):
        name = gateway["metadata"]["name"]
        gateways[name] = {l["name"]: (l["protocol"], l["port"]) for l in gateway["spec"]["listeners"]}
        policy = policies.get(key("Gateway", gateway["metadata"]))
        networks[name] = {"name": name, "auth": "AWS_IAM" if policy else "NONE", "policy": policy}

    services = []
    for route in (o for o in objects if o["kind"] in ("HTTPRoute", "GRPCRoute")):
        metadata, spec = route["metadata"], route["spec"]
        listeners, parents = [], []
        for parent in spec.get("parentRefs", []):
            gateway = gateways.get(parent["name"])
            if gateway is None:
                continue
            parents.append(parent["name"])
            sections = [parent["sectionName"]] if "sectionName" in parent else list(gateway)
            for section in sections:
                protocol, port = gateway[section]
                if route["kind"] == "GRPCRoute" and protocol != "HTTPS":
                    continue
                if [protocol, port] not in listeners:
                    listeners.append([protocol, port])
        policy = policies.get(key(route["kind"], metadata))
        hostnames = spec.get("hostnames") or [None]
        services.append({
            "name": f"{metadata['name']}-{metadata.get('namespace', 'default')}",
            "custom_domain": hostnames[0],
            "auth": "AWS_IAM" if policy else "NONE",
            "policy": policy,
            "listeners": listeners,
            "networks": sorted(set(parents)),
        })
    json.dump({"endpoint": endpoint, "region": region, "vpc": vpc, "networks": list(networks.values()), "services": services}, sys.stdout)


main()
