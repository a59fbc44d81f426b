package deploy

import (
	"bytes"
	"strings"
	"testing"
)

// Each check can fail: the manifests broken the way a hand edit breaks
// them are caught, with a message that names the problem.
func TestReferenceChecksCatchBrokenManifests(t *testing.T) {
	for _, tc := range []struct {
		name, file, old, new, want string
	}{
		{"a Service targets a port the pods lack", "tenantguard.yaml",
			"      targetPort: otlp-grpc", "      targetPort: otlp", "no container of"},
		{"the headless Service gets a cluster IP", "tenantguard.yaml",
			"  clusterIP: None", "  clusterIP: 10.0.0.10", "not headless"},
		{"the StatefulSet names another Service", "tenantguard.yaml",
			"  serviceName: tenantguard", "  serviceName: tenantguard-headless", "is no Service"},
		{"a Service selects nothing", "lb.yaml",
			"  selector:\n    app.kubernetes.io/name: tenantguard-lb\n  ports:", "  selector:\n    app.kubernetes.io/name: lb\n  ports:", "selects 0 workloads"},
		{"a workload's selector misses its pods", "lb.yaml",
			"    matchLabels:\n      app.kubernetes.io/name: tenantguard-lb", "    matchLabels:\n      app: tenantguard-lb", "does not select its pod template"},
		{"a mount without a volume", "tenantguard.yaml",
			"            - name: data\n              mountPath", "            - name: journal\n              mountPath", "no volume or claim template"},
		{"a ConfigMap key that is not there", "lb.yaml",
			"              - key: config.yaml", "              - key: front.yaml", "does not have"},
		{"a Secret key that is not there", "tenantguard.yaml",
			"key: clickhouse-password", "key: clickhouse_password", "does not have"},
		{"a probe on a missing port", "lb.yaml",
			"              port: otlp-grpc", "              port: grpc", "probe port"},
		{"scraping a port nobody serves", "tenantguard.yaml",
			`prometheus.io/port: "9464"`, `prometheus.io/port: "9465"`, "no container port"},
		{"the resolver watches another Service", "lb-config.yaml",
			"service: tenantguard.observability", "service: tenantguard-headless.observability", "does not declare"},
		{"the resolver looks in another namespace", "lb-config.yaml",
			"service: tenantguard.observability", "service: tenantguard.default", "does not declare"},
		{"the resolver sends to another port", "lb-config.yaml",
			"ports: [4317]", "ports: [4318]", "sends to port"},
		{"routing by service splits traces", "lb-config.yaml",
			"routing_key: traceID", "routing_key: service", "routing_key"},
		{"the resolver may not watch", "lb-rbac.yaml",
			"verbs: [get, list, watch]", "verbs: [get, list]", "may not watch"},
		{"the role is bound to another account", "lb-rbac.yaml",
			"  - kind: ServiceAccount\n    name: tenantguard-lb", "  - kind: ServiceAccount\n    name: default", "no ServiceAccount of the kit"},
		{"a config reads an unset variable", "tenantguard-config.yaml",
			"${env:CLICKHOUSE_PASSWORD}", "${env:CH_PASSWORD}", "does not set"},
		{"the journal off the persistent volume", "tenantguard-config.yaml",
			"path: /var/lib/tenantguard/leaks.jsonl", "path: /tmp/leaks.jsonl", "not on a persistent volume"},
		{"metrics on loopback", "tenantguard-config.yaml",
			"endpoint: ${env:POD_IP}:9464", "endpoint: 127.0.0.1:9464", "loopback"},
		{"a receiver on a port the pod does not declare", "lb-config.yaml",
			"endpoint: ${env:POD_IP}:4318", "endpoint: ${env:POD_IP}:4319", "no container port"},
		{"a --config the pod does not mount", "tenantguard.yaml",
			`args: ["--config=/etc/tenantguard/config.yaml"]`, `args: ["--config=/etc/tenantguard.yaml"]`, "not a ConfigMap key mounted"},
		{"an object outside the namespace", "lb-config.yaml",
			"  namespace: observability", "  namespace: monitoring", "not in the kit's namespace"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := readManifests(t)
			broken := bytes.Replace(files[tc.file], []byte(tc.old), []byte(tc.new), 1)
			if bytes.Equal(broken, files[tc.file]) {
				t.Fatalf("%s has no %q to break", tc.file, tc.old)
			}
			files[tc.file] = broken
			c, err := decodeCluster(files)
			if err != nil {
				t.Fatalf("the broken manifests must still decode: %v", err)
			}
			var msgs []string
			for _, ck := range referenceChecks {
				for _, err := range ck.check(c) {
					msgs = append(msgs, ck.name+": "+err.Error())
				}
			}
			if !strings.Contains(strings.Join(msgs, "\n"), tc.want) {
				t.Errorf("no check reported %q; they said:\n%s", tc.want, strings.Join(msgs, "\n"))
			}
		})
	}
}
