"""A third-party client of Corral's gRPC API: Python grpcio stubs generated from the .proto
(protoc --python_out --grpc_python_out), TLS verified with the cluster CA, a bearer token.

Usage: corral_client.py STUBS_DIR HOST:PORT CA_FILE TOKEN
Prints one line per call: `<call> OK <detail>` or `<call> <GRPC_CODE> <message>`.
"""
import json
import sys

stubs, target, ca_file, token = sys.argv[1:5]
sys.path.insert(0, stubs)

import grpc  # noqa: E402
from corral.v1 import api_pb2, api_pb2_grpc  # noqa: E402

with open(ca_file, "rb") as f:
    ca = f.read()


def stub(with_token):
    creds = grpc.ssl_channel_credentials(root_certificates=ca)
    if with_token:
        creds = grpc.composite_channel_credentials(
            creds, grpc.access_token_call_credentials(token)
        )
    return api_pb2_grpc.ApiStub(grpc.secure_channel(target, creds))


def call(name, fn):
    try:
        print(name, "OK", fn(), flush=True)
    except grpc.RpcError as e:
        print(name, e.code().name, e.details().splitlines()[0], flush=True)


api = stub(True)
call("version", lambda: api.Version(api_pb2.VersionRequest()).version or "-")
call(
    "list-configmaps",
    lambda: sorted(
        json.loads(o)["metadata"]["name"]
        for o in api.List(api_pb2.ListRequest(resource="configmaps", namespace="default")).items
    ),
)
call(
    "delete-configmap",
    lambda: api.Delete(
        api_pb2.DeleteRequest(
            ref=api_pb2.ObjectRef(resource="configmaps", namespace="default", name="settings")
        )
    ),
)
call(
    "version-without-token",
    lambda: stub(False).Version(api_pb2.VersionRequest()).version,
)
