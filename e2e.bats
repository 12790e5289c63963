#!/usr/bin/env bats
# End-to-end tests of the annotated policy with kwctl (run by `just e2e-tests`).
# kwctl is not installable on the development machines, so these are written, not run there.

@test "virtual device: instrumented containers request the resource" {
  run kwctl run annotated-policy.wasm -r test_data/pod_typical.json --settings-json '{}'
  [ "$status" -eq 0 ]
  [ $(expr "$output" : '.*"allowed":true.*') -ne 0 ]
  [ $(expr "$output" : '.*"patchType":"JSONPatch".*') -ne 0 ]
}

@test "host path: the volume and mounts are added" {
  run kwctl run annotated-policy.wasm -r test_data/pod_typical.json --settings-json '{"mountMethod": "k8s-host-path"}'
  [ "$status" -eq 0 ]
  [ $(expr "$output" : '.*"allowed":true.*') -ne 0 ]
  [ $(expr "$output" : '.*"patchType":"JSONPatch".*') -ne 0 ]
}

@test "init container: the copy container is added" {
  run kwctl run annotated-policy.wasm -r test_data/pod_typical.json \
    --settings-json '{"mountMethod": "k8s-init-container", "initContainer": {"image": "ghcr.io/example/agents:1.0"}}'
  [ "$status" -eq 0 ]
  [ $(expr "$output" : '.*"allowed":true.*') -ne 0 ]
  [ $(expr "$output" : '.*"patchType":"JSONPatch".*') -ne 0 ]
}

@test "a conflict leaves the pod unchanged with a warning" {
  run kwctl run annotated-policy.wasm -r test_data/pod_conflict_resource.json --settings-json '{}'
  [ "$status" -eq 0 ]
  [ $(expr "$output" : '.*"allowed":true.*') -ne 0 ]
  [ $(expr "$output" : '.*pod left unchanged.*') -ne 0 ]
  [ $(expr "$output" : '.*"patch".*') -eq 0 ]
}

@test "an unreadable pod is rejected" {
  run kwctl run annotated-policy.wasm -r test_data/pod_unreadable.json --settings-json '{}'
  [ "$status" -eq 0 ]
  [ $(expr "$output" : '.*"allowed":false.*') -ne 0 ]
  [ $(expr "$output" : '.*cannot be read as a pod.*') -ne 0 ]
}

@test "invalid settings are refused" {
  run kwctl run annotated-policy.wasm -r test_data/pod_typical.json --settings-json '{"mountMethod": "VirtualDevice"}'
  [ "$status" -ne 0 ]
  [ $(expr "$output" : '.*expected one of: k8s-virtual-device, k8s-host-path, k8s-init-container.*') -ne 0 ]
}
