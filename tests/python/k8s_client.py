"""The Python `kubernetes` client against a Corral cluster: list, create, patch, watch, delete.

Run by tests/tests/kubectl.rs with KUBECONFIG set to the cluster's admin kubeconfig. Prints
one line per step; any failure raises (non-zero exit).
"""
from kubernetes import client, config, watch

config.load_kube_config()
v1 = client.CoreV1Api()

names = [n.metadata.name for n in v1.list_namespace().items]
assert "kube-system" in names, names
print("namespaces", len(names))

cm = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="py-cm", labels={"from": "python"}),
                        data={"a": "1"})
created = v1.create_namespaced_config_map("default", cm)
print("created", created.metadata.name, created.metadata.resource_version)

patched = v1.patch_namespaced_config_map("py-cm", "default", {"data": {"b": "2"}})
assert patched.data == {"a": "1", "b": "2"}, patched.data
print("patched", sorted(patched.data))

listed = v1.list_namespaced_config_map("default", label_selector="from=python")
assert [c.metadata.name for c in listed.items] == ["py-cm"], listed.items

w = watch.Watch()
seen = []
for ev in w.stream(v1.list_namespaced_config_map, "default", field_selector="metadata.name=py-cm",
                   timeout_seconds=10):
    seen.append(ev["type"])
    if ev["type"] == "ADDED":
        v1.delete_namespaced_config_map("py-cm", "default")
    if ev["type"] == "DELETED":
        w.stop()
assert seen == ["ADDED", "DELETED"], seen
print("watched", " ".join(seen))

try:
    v1.read_namespaced_config_map("py-cm", "default")
    raise AssertionError("py-cm still exists")
except client.exceptions.ApiException as e:
    assert e.status == 404, e.status
print("gone 404")
