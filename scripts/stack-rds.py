#!/usr/bin/env python3
"""The local stack's RDS topology, made in moto through its RDS API (scripts/stack up rds).

Idempotent: what exists is kept, what is missing is created (moto keeps its state in memory, so
after a moto restart everything is created again). Every resource points at one of the stack's
real servers by its port, and has an RDS-managed master secret (`rds!db-...`, `rds!cluster-...`,
whose value moto always makes {"username": "admin", "password": "P@55w0rd!"}):

  rotor-pg15            postgres, pg15's port
  rotor-pg15-replica    its read replica, pg15replica's port
  rotor-aurora-pg       aurora-postgresql cluster on pg17's port, instances rotor-aurora-pg-1 (writer)
                        and rotor-aurora-pg-2
  rotor-mariadb         mariadb, MariaDB's port
  rotor-unrelated       postgres on pg17's port (another server than rotor-pg15's)

Writes the endpoints and master secret ARNs to the state file (KEY='value' lines, which
scripts/stack exports), and prints the servers (pg15, pg17, mariadb) whose master secret was
created by this run: their `admin` password must be set back to moto's.
"""
import argparse
import os
import random
import sys
import urllib.request

import boto3

# The cluster endpoints' 12 characters come from moto's seedable random (instance endpoints are
# always <id>.aaaaaaaaaa.<region>...): seeding it right before CreateDBCluster gives the same
# names in every moto process, so that the stack's certificate, which must name them, is not
# re-issued at each moto restart. scripts/stack still re-issues it whenever the names differ.
CLUSTER_SEED = 25051
REGION = "us-east-1"


def main() -> None:
    args = argparse.ArgumentParser()
    args.add_argument("--endpoint", required=True)
    args.add_argument("--pg15-port", type=int, required=True)
    args.add_argument("--pg15-replica-port", type=int, required=True)
    args.add_argument("--pg17-port", type=int, required=True)
    args.add_argument("--mariadb-port", type=int, required=True)
    args.add_argument("--out", required=True)
    a = args.parse_args()

    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    )
    rds = session.client("rds", endpoint_url=a.endpoint)
    sm = session.client("secretsmanager", endpoint_url=a.endpoint)
    reset = set()

    instances = {i["DBInstanceIdentifier"]: i for i in pages(rds, "describe_db_instances", "DBInstances")}
    clusters = {c["DBClusterIdentifier"]: c for c in pages(rds, "describe_db_clusters", "DBClusters")}

    def instance(ident, server, port, create, **kwargs):
        if ident in instances:
            have = instances[ident]["Endpoint"]["Port"]
            if have != port:
                sys.exit(f"moto's {ident} is on port {have}, the stack's on {port}: restart moto "
                         "(scripts/stack down; scripts/stack up)")
            return
        kwargs.update(DBInstanceIdentifier=ident, Port=port)
        instances[ident] = getattr(rds, create)(**kwargs)["DBInstance"]
        if server:
            reset.add(server)

    master = dict(MasterUsername="admin", ManageMasterUserPassword=True, AllocatedStorage=20)
    instance("rotor-pg15", "pg15", a.pg15_port, "create_db_instance", Engine="postgres",
             EngineVersion="15.10", DBInstanceClass="db.t3.micro", **master)
    # moto keeps the Port given here (checked in describe below). Its replica is a copy of the
    # primary, so it also shows the primary's MasterUserSecret, which real RDS does not.
    instance("rotor-pg15-replica", None, a.pg15_replica_port, "create_db_instance_read_replica",
             SourceDBInstanceIdentifier="rotor-pg15", DBInstanceClass="db.t3.micro")

    if "rotor-aurora-pg" not in clusters:
        post(f"{a.endpoint}/moto-api/seed?a={CLUSTER_SEED}")
        clusters["rotor-aurora-pg"] = rds.create_db_cluster(
            DBClusterIdentifier="rotor-aurora-pg", Engine="aurora-postgresql", EngineVersion="17.4",
            Port=a.pg17_port, MasterUsername="admin", ManageMasterUserPassword=True,
        )["DBCluster"]
        # Back to unpredictable: the rest of moto's names (secret ARN suffixes...) stay random.
        post(f"{a.endpoint}/moto-api/seed?a={random.SystemRandom().randrange(2**32)}")
        reset.add("pg17")
    elif clusters["rotor-aurora-pg"]["Port"] != a.pg17_port:
        sys.exit(f"moto's rotor-aurora-pg is on port {clusters['rotor-aurora-pg']['Port']}, pg17 on "
                 f"{a.pg17_port}: restart moto (scripts/stack down; scripts/stack up)")
    for n in (1, 2):  # the first one created is the writer
        instance(f"rotor-aurora-pg-{n}", None, a.pg17_port, "create_db_instance",
                 Engine="aurora-postgresql", DBInstanceClass="db.r6g.large",
                 DBClusterIdentifier="rotor-aurora-pg")
    instance("rotor-mariadb", "mariadb", a.mariadb_port, "create_db_instance", Engine="mariadb",
             EngineVersion="10.11.10", DBInstanceClass="db.t3.micro", **master)
    instance("rotor-unrelated", "pg17", a.pg17_port, "create_db_instance", Engine="postgres",
             EngineVersion="17.4", DBInstanceClass="db.t3.micro", **master)

    # What RDS answers now, checked: endpoints on the given ports, master secrets tagged as RDS
    # tags them.
    described = {i["DBInstanceIdentifier"]: i for i in pages(rds, "describe_db_instances", "DBInstances")}
    cluster = rds.describe_db_clusters(DBClusterIdentifier="rotor-aurora-pg")["DBClusters"][0]
    ports = {"rotor-pg15": a.pg15_port, "rotor-pg15-replica": a.pg15_replica_port,
             "rotor-aurora-pg-1": a.pg17_port, "rotor-aurora-pg-2": a.pg17_port,
             "rotor-mariadb": a.mariadb_port, "rotor-unrelated": a.pg17_port}
    for ident, port in ports.items():
        if described[ident]["Endpoint"]["Port"] != port:
            sys.exit(f"moto gave {ident} port {described[ident]['Endpoint']['Port']}, not {port}")

    def master_arn(resource, kind):
        arn = resource.get("MasterUserSecret", {}).get("SecretArn")
        if not arn:
            sys.exit(f"moto's {resource.get('DBInstanceIdentifier') or resource['DBClusterIdentifier']} "
                     "has no MasterUserSecret")
        tags = {t["Key"]: t["Value"] for t in sm.describe_secret(SecretId=arn).get("Tags", [])}
        own = resource.get("DBInstanceArn") or resource["DBClusterArn"]
        if tags.get(f"aws:rds:primary{kind}Arn") != own:
            sys.exit(f"the master secret {arn} is not tagged aws:rds:primary{kind}Arn={own}")
        return arn

    host = {ident: i["Endpoint"]["Address"] for ident, i in described.items() if ident in ports}
    values = {
        "ROTOR_RDS_PG15_HOST": host["rotor-pg15"],
        "ROTOR_RDS_PG15_REPLICA_HOST": host["rotor-pg15-replica"],
        "ROTOR_RDS_AURORA_WRITER_HOST": cluster["Endpoint"],
        "ROTOR_RDS_AURORA_READER_HOST": cluster["ReaderEndpoint"],
        "ROTOR_RDS_AURORA_INSTANCE_HOST": host["rotor-aurora-pg-2"],
        "ROTOR_RDS_MARIADB_HOST": host["rotor-mariadb"],
        "ROTOR_RDS_UNRELATED_HOST": host["rotor-unrelated"],
        "ROTOR_RDS_PG15_MASTER_ARN": master_arn(described["rotor-pg15"], "DBInstance"),
        "ROTOR_RDS_AURORA_MASTER_ARN": master_arn(cluster, "DBCluster"),
        "ROTOR_RDS_MARIADB_MASTER_ARN": master_arn(described["rotor-mariadb"], "DBInstance"),
        "ROTOR_RDS_UNRELATED_MASTER_ARN": master_arn(described["rotor-unrelated"], "DBInstance"),
        # Every endpoint name (/etc/hosts), and those the certificate's wildcard does not cover.
        "ROTOR_RDS_HOSTS": " ".join([*host.values(), cluster["Endpoint"], cluster["ReaderEndpoint"]]),
        "ROTOR_RDS_CLUSTER_HOSTS": " ".join([cluster["Endpoint"], cluster["ReaderEndpoint"]]),
    }
    with open(a.out + ".new", "w") as f:
        f.writelines(f"{key}='{value}'\n" for key, value in values.items())
    os.replace(a.out + ".new", a.out)
    for server in sorted(reset):
        print(server)


def pages(client, operation, key):
    for page in client.get_paginator(operation).paginate():
        yield from page[key]


def post(url):
    urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=10).read()


if __name__ == "__main__":
    main()
