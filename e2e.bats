#!/usr/bin/env bats
# End-to-end tests of the annotated policy with `kwctl run` (`just e2e-tests`; the release
# workflow runs them before it pushes the policy). Every method mutates
# test_data/pod_typical.json (containers checkout, istio-proxy, cache-warmer); the patch is
# applied as the API server would (scripts/apply_patch.py) and the patched pod checked with
# jq; then the policy runs on its own output and must return no patch (idempotence).
# Needs kwctl, bats >= 1.5, jq and python3. $POLICY overrides the module.

bats_require_minimum_version 1.5.0

POD=test_data/pod_typical.json
INSTRUMENTED='["checkout", "cache-warmer"]'

# Runs the policy on a request with JSON settings; kwctl's response (stdout) lands in $output.
evaluate() {
  run --separate-stderr kwctl run "${POLICY:-annotated-policy.wasm}" -r "$1" --settings-json "$2"
  if [ "$status" -ne 0 ]; then
    echo "kwctl run failed ($status): $stderr" >&2
    return 1
  fi
}

# Mutates $POD with the settings: the pod is accepted with a JSON patch, the patched request is
# written to $BATS_TEST_TMPDIR/mutated.json and the patch to $BATS_TEST_TMPDIR/patch.json, and
# a second run on the patched pod returns no patch.
mutate() {
  local settings=$1
  evaluate "$POD" "$settings"
  echo "$output" | jq -e '.allowed == true and .patchType == "JSONPatch"'
  echo "$output" | jq -r .patch | base64 -d >"$BATS_TEST_TMPDIR/patch.json"
  echo "$output" | python3 scripts/apply_patch.py "$POD" >"$BATS_TEST_TMPDIR/mutated.json"

  evaluate "$BATS_TEST_TMPDIR/mutated.json" "$settings"
  echo "$output" | jq -e '.allowed == true and (has("patch") | not)'
}

# Checks the patched pod: `pod FILTER` succeeds when the jq filter is true of it.
pod() {
  jq -e --argjson instrumented "$INSTRUMENTED" ".object | $1" "$BATS_TEST_TMPDIR/mutated.json"
}

# The patch only adds: nothing the pod had is removed or rewritten.
only_adds() {
  jq -e 'length > 0 and all(.op == "add")' "$BATS_TEST_TMPDIR/patch.json"
}

# The read-only whole-directory mount every volume method gives each instrumented container,
# and nothing to the ignored istio-proxy.
mounted_read_only() {
  local sub_path=${1:-null}
  pod "[.spec.containers[] | select(.name as \$n | \$instrumented | index(\$n))
        | any(.volumeMounts[]?; .name == \"odigos-agent\" and .mountPath == \"/var/odigos\"
              and .readOnly == true and .subPath == $sub_path)] | all"
  pod '.spec.containers[] | select(.name == "istio-proxy") | all(.volumeMounts[]?; .name != "odigos-agent")'
}

@test "virtual device: instrumented containers request the resource, idempotently" {
  mutate '{}'
  only_adds
  pod '[.spec.containers[] | select(.name as $n | $instrumented | index($n))
        | .resources.limits["instrumentation.odigos.io/generic"] == "1"
          and .resources.requests["instrumentation.odigos.io/generic"] == "1"] | all'
  pod '.spec.containers[] | select(.name == "istio-proxy") | .resources.limits["instrumentation.odigos.io/generic"] == null'
  pod 'all(.spec.volumes[]; .name != "odigos-agent")'
}

@test "host path: the hostPath volume and read-only mounts, idempotently" {
  mutate '{"mountMethod": "k8s-host-path"}'
  only_adds
  pod '[.spec.volumes[] | select(.name == "odigos-agent")] == [{"name": "odigos-agent", "hostPath": {"path": "/var/odigos"}}]'
  mounted_read_only
}

@test "init container: the copy container first, an emptyDir and read-only mounts, idempotently" {
  mutate '{"mountMethod": "k8s-init-container", "initContainer": {"image": "ghcr.io/agent-mount/agents:v0.1.0"}}'
  pod '.spec.initContainers[0].name == "odigos-agent-init" and .spec.initContainers[0].image == "ghcr.io/agent-mount/agents:v0.1.0"'
  pod '.spec.initContainers[1].name == "istio-init"'
  pod '.spec.initContainers[0].securityContext | .runAsNonRoot == true and .allowPrivilegeEscalation == false'
  pod '[.spec.volumes[] | select(.name == "odigos-agent") | has("emptyDir")] == [true]'
  mounted_read_only
}

@test "csi driver: the inline CSI volume and read-only mounts, idempotently" {
  mutate '{"mountMethod": "k8s-csi-driver", "csiDriver": "odigos.csi.driver"}'
  only_adds
  pod '[.spec.volumes[] | select(.name == "odigos-agent")]
       == [{"name": "odigos-agent", "csi": {"driver": "odigos.csi.driver", "readOnly": true, "volumeAttributes": {"type": "instrumentation"}}}]'
  mounted_read_only
}

@test "image volume: the agents image as a volume and read-only mounts of its instrumentations/, idempotently" {
  mutate '{"mountMethod": "k8s-image-volume", "imageVolume": {"reference": "ghcr.io/agent-mount/agents:v0.1.0", "pullPolicy": "IfNotPresent"}}'
  only_adds
  pod '[.spec.volumes[] | select(.name == "odigos-agent")]
       == [{"name": "odigos-agent", "image": {"reference": "ghcr.io/agent-mount/agents:v0.1.0", "pullPolicy": "IfNotPresent"}}]'
  mounted_read_only '"instrumentations"'
}

@test "activation: the JVM option joined after the app's own, the one replace, the service named, idempotently" {
  POD=test_data/pod_activation_join_append.json mutate '{"activation": {"env": [{"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}}, {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://$(HOST_IP):4317"}]}}'
  jq -e '[.[] | select(.op != "add")] == [{"op": "replace", "path": "/spec/containers/0/env/0/value",
         "value": "-Xmx1g -Dfile.encoding=UTF-8 -javaagent:/var/odigos/java/javaagent.jar"}]' "$BATS_TEST_TMPDIR/patch.json"
  pod '.spec.containers[0].env == [
         {"name": "JAVA_TOOL_OPTIONS", "value": "-Xmx1g -Dfile.encoding=UTF-8 -javaagent:/var/odigos/java/javaagent.jar"},
         {"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
         {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://$(HOST_IP):4317"},
         {"name": "OTEL_RESOURCE_ATTRIBUTES_NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
         {"name": "OTEL_RESOURCE_ATTRIBUTES_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
         {"name": "OTEL_RESOURCE_ATTRIBUTES_POD_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
         {"name": "OTEL_SERVICE_NAME", "value": "shop-app"},
         {"name": "OTEL_RESOURCE_ATTRIBUTES", "value": "k8s.container.name=app,k8s.namespace.name=shop,k8s.node.name=$(OTEL_RESOURCE_ATTRIBUTES_NODE_NAME),k8s.pod.name=$(OTEL_RESOURCE_ATTRIBUTES_POD_NAME),k8s.pod.uid=$(OTEL_RESOURCE_ATTRIBUTES_POD_UID)"}]'
  pod '.spec.containers[0].resources.limits["instrumentation.odigos.io/generic"] == "1"'
}

@test "a conflict leaves the pod unchanged with a warning" {
  evaluate test_data/pod_conflict_resource.json '{}'
  echo "$output" | jq -e '.allowed == true and (has("patch") | not)'
  echo "$output" | jq -e '.warnings | any(test("left unchanged"))'
}

@test "an unreadable pod is rejected" {
  evaluate test_data/pod_unreadable.json '{}'
  echo "$output" | jq -e '.allowed == false'
  echo "$output" | jq -e '.status.message | test("cannot be read as a pod")'
}

@test "invalid settings are refused, naming the key and the methods" {
  run kwctl run "${POLICY:-annotated-policy.wasm}" -r "$POD" --settings-json '{"mountMethod": "VirtualDevice"}'
  [ "$status" -ne 0 ]
  [[ "$output" == *mountMethod* && "$output" == *k8s-virtual-device* && "$output" == *k8s-image-volume* ]]
}
