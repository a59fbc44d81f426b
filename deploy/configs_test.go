package deploy

import (
	"fmt"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// collectorConfig is a collector config a container runs, as the manifests
// deliver it: the file named by --config, mounted from a ConfigMap key.
type collectorConfig struct {
	w         workload
	ctr       corev1.Container
	configMap string
	key       string
	text      string
	tree      map[string]any
}

func (cc collectorConfig) String() string {
	return fmt.Sprintf("%s container %s (ConfigMap %s key %s)", cc.w, cc.ctr.Name, cc.configMap, cc.key)
}

// collectorConfigs finds the config file of every container and reads it
// from the ConfigMap mounted there.
func collectorConfigs(c *cluster) ([]collectorConfig, []error) {
	var (
		out  []collectorConfig
		errs []error
	)
	for _, w := range c.workloads() {
		for _, ctr := range w.pod.Spec.Containers {
			var file string
			for _, a := range append(slices.Clone(ctr.Command), ctr.Args...) {
				if f, ok := strings.CutPrefix(a, "--config="); ok {
					file = f
				}
			}
			if file == "" {
				errs = append(errs, fmt.Errorf("%s container %s: no --config=FILE argument", w, ctr.Name))
				continue
			}
			cm, key, ok := c.mountedFile(w, ctr, file)
			if !ok {
				errs = append(errs, fmt.Errorf("%s container %s: --config=%s is not a ConfigMap key mounted in the container", w, ctr.Name, file))
				continue
			}
			m := c.configMaps[w.namespace+"/"+cm]
			if m == nil {
				errs = append(errs, fmt.Errorf("%s container %s: --config=%s is in ConfigMap %s, which is not in namespace %s", w, ctr.Name, file, cm, w.namespace))
				continue
			}
			cc := collectorConfig{w: w, ctr: ctr, configMap: cm, key: key, text: m.Data[key]}
			if err := yaml.Unmarshal([]byte(cc.text), &cc.tree); err != nil {
				errs = append(errs, fmt.Errorf("%s: not YAML: %v", cc, err))
				continue
			}
			out = append(out, cc)
		}
	}
	return out, errs
}

// dig walks a decoded YAML tree by map keys.
func dig(tree any, keys ...string) any {
	for _, k := range keys {
		m, ok := tree.(map[string]any)
		if !ok {
			return nil
		}
		tree = m[k]
	}
	return tree
}

func digString(tree any, keys ...string) string {
	s, _ := dig(tree, keys...).(string)
	return s
}

// port is the port of a host:port endpoint (the host may be ${env:POD_IP}).
func port(endpoint string) (int32, error) {
	i := strings.LastIndex(endpoint, ":")
	if i < 0 {
		return 0, fmt.Errorf("endpoint %q has no port", endpoint)
	}
	p, err := strconv.ParseUint(endpoint[i+1:], 10, 16)
	return int32(p), err
}

var envRef = regexp.MustCompile(`\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}`)

// envRefs lists the ${env:NAME} a config reads.
func envRefs(text string) []string {
	var names []string
	for _, m := range envRef.FindAllStringSubmatch(text, -1) {
		if !slices.Contains(names, m[1]) {
			names = append(names, m[1])
		}
	}
	return names
}

// checkCollectorConfigs checks each collector config against the pod that
// runs it: the environment it reads, the ports it listens on, where it
// writes, and, for the front tier, the Service its resolver watches and the
// permission to watch it.
func checkCollectorConfigs(c *cluster) []error {
	configs, errs := collectorConfigs(c)
	var front, detectors []collectorConfig
	for _, cc := range configs {
		// Every ${env:...} is set in the container: an unset one would be an
		// empty password or endpoint at start.
		for _, name := range envRefs(cc.text) {
			if !slices.ContainsFunc(cc.ctr.Env, func(e corev1.EnvVar) bool { return e.Name == name }) {
				errs = append(errs, fmt.Errorf("%s reads ${env:%s}, which the container does not set", cc, name))
			}
		}
		// The OTLP receivers listen on container ports.
		for _, proto := range []string{"grpc", "http"} {
			ep := digString(cc.tree, "receivers", "otlp", "protocols", proto, "endpoint")
			if ep == "" {
				continue
			}
			p, err := port(ep)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: receivers.otlp.protocols.%s.endpoint: %v", cc, proto, err))
			} else if _, ok := containerPort(cc.ctr, "", p); !ok {
				errs = append(errs, fmt.Errorf("%s: the OTLP %s receiver listens on %d, which is no container port", cc, proto, p))
			}
		}
		switch {
		case dig(cc.tree, "exporters", "load_balancing") != nil:
			front = append(front, cc)
		case dig(cc.tree, "processors", "tenantguard") != nil:
			detectors = append(detectors, cc)
		default:
			errs = append(errs, fmt.Errorf("%s is neither the front tier's nor a tenantguard config", cc))
		}
	}
	if len(front) != 1 || len(detectors) != 1 {
		return append(errs, fmt.Errorf("%d front configs and %d tenantguard configs, want one of each", len(front), len(detectors)))
	}
	errs = append(errs, checkFrontConfig(c, front[0], detectors[0])...)
	return append(errs, checkDetectorConfig(detectors[0])...)
}

// The front tier routes by trace id to the pods behind the tenantguard
// headless Service, on the port they receive OTLP/gRPC on, and may watch
// that Service's EndpointSlices.
func checkFrontConfig(c *cluster, lb, det collectorConfig) []error {
	var errs []error
	lbx := dig(lb.tree, "exporters", "load_balancing")
	if rk := digString(lbx, "routing_key"); rk != "traceID" {
		errs = append(errs, fmt.Errorf("%s: routing_key %q; detection needs every span of a trace on one collector (traceID)", lb, rk))
	}
	resolver, _ := dig(lbx, "resolver").(map[string]any)
	if len(resolver) != 1 || resolver["k8s"] == nil {
		return append(errs, fmt.Errorf("%s: resolver %v, want the k8s resolver alone", lb, resolver))
	}
	name, ns, ok := strings.Cut(digString(resolver, "k8s", "service"), ".")
	if !ok {
		return append(errs, fmt.Errorf("%s: resolver.k8s.service %q is not <service>.<namespace>", lb, digString(resolver, "k8s", "service")))
	}
	svc := c.services[ns+"/"+name]
	if svc == nil {
		return append(errs, fmt.Errorf("%s: the resolver watches Service %s/%s, which the kit does not declare", lb, ns, name))
	}
	if svc.Spec.ClusterIP != corev1.ClusterIPNone {
		errs = append(errs, fmt.Errorf("%s: the resolver's Service %s is not headless", lb, name))
	}
	if !selects(svc.Spec.Selector, det.w.pod.Labels) || det.w.sts == nil || det.w.sts.Spec.ServiceName != name {
		errs = append(errs, fmt.Errorf("%s: the resolver's Service %s is not the headless Service of the tenantguard StatefulSet (%s)", lb, name, det.w))
	}
	grpcPort, err := port(digString(det.tree, "receivers", "otlp", "protocols", "grpc", "endpoint"))
	if err != nil {
		return append(errs, fmt.Errorf("%s: %v", det, err))
	}
	ports, _ := dig(resolver, "k8s", "ports").([]any)
	if len(ports) != 1 {
		return append(errs, fmt.Errorf("%s: resolver.k8s.ports %v, want the one OTLP/gRPC port", lb, ports))
	}
	if p, _ := ports[0].(float64); int32(p) != grpcPort {
		errs = append(errs, fmt.Errorf("%s: the resolver sends to port %v, the tenantguard collectors receive OTLP/gRPC on %d", lb, ports[0], grpcPort))
	}
	if !slices.ContainsFunc(svc.Spec.Ports, func(sp corev1.ServicePort) bool { return sp.Port == grpcPort }) {
		errs = append(errs, fmt.Errorf("%s: the headless Service %s does not list port %d", lb, name, grpcPort))
	}
	for _, verb := range []string{"get", "list", "watch"} {
		if !c.grants(ns, lb.w.pod.Spec.ServiceAccountName, "discovery.k8s.io", "endpointslices", verb) {
			errs = append(errs, fmt.Errorf("%s: service account %q may not %s endpointslices in %s; the k8s resolver needs get, list and watch",
				lb, lb.w.pod.Spec.ServiceAccountName, verb, ns))
		}
	}
	// Its own metrics are served where the pod annotation says.
	readers, _ := dig(lb.tree, "service", "telemetry", "metrics", "readers").([]any)
	if len(readers) != 1 {
		return append(errs, fmt.Errorf("%s: want one metrics reader, have %v", lb, readers))
	}
	p, _ := dig(readers[0], "pull", "exporter", "prometheus", "port").(float64)
	if strconv.Itoa(int(p)) != lb.w.pod.Annotations["prometheus.io/port"] {
		errs = append(errs, fmt.Errorf("%s: metrics served on %v, scraped on %s", lb, p, lb.w.pod.Annotations["prometheus.io/port"]))
	}
	return errs
}

// A tenantguard collector serves /metrics where its pod annotation says,
// and its journal and Slack outbox are on its persistent volume.
func checkDetectorConfig(det collectorConfig) []error {
	var errs []error
	tg := dig(det.tree, "processors", "tenantguard")
	ep := digString(tg, "metrics", "endpoint")
	p, err := port(ep)
	if err != nil {
		errs = append(errs, fmt.Errorf("%s: metrics.endpoint: %v", det, err))
	} else if strconv.Itoa(int(p)) != det.w.pod.Annotations["prometheus.io/port"] {
		errs = append(errs, fmt.Errorf("%s: /metrics on %d, scraped on %s", det, p, det.w.pod.Annotations["prometheus.io/port"]))
	}
	if host, _, _ := net.SplitHostPort(ep); host == "127.0.0.1" || host == "localhost" {
		errs = append(errs, fmt.Errorf("%s: /metrics on loopback cannot be scraped", det))
	}
	for _, file := range []struct{ field, path string }{
		{"store.journal.path", digString(tg, "store", "journal", "path")},
		{"alerts.slack.outbox_path", digString(tg, "alerts", "slack", "outbox_path")},
	} {
		if file.path == "" {
			errs = append(errs, fmt.Errorf("%s: %s is not set", det, file.field))
			continue
		}
		if _, ok := persistentMount(det.w, det.ctr, file.path); !ok {
			errs = append(errs, fmt.Errorf("%s: %s %s is not on a persistent volume (volumeClaimTemplates)", det, file.field, file.path))
		}
	}
	procs, _ := dig(det.tree, "service", "pipelines", "traces", "processors").([]any)
	if !slices.Contains(procs, any("tenantguard")) {
		errs = append(errs, fmt.Errorf("%s: the traces pipeline does not run tenantguard: %v", det, procs))
	}
	return errs
}
