package deploy

import (
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// TestManifestReferences checks what the API server does not: that the
// objects the manifests declare refer to each other correctly, so the kit
// works once applied rather than waiting on a Service that selects nothing.
func TestManifestReferences(t *testing.T) {
	c := loadCluster(t)
	for _, ck := range referenceChecks {
		t.Run(ck.name, func(t *testing.T) {
			for _, err := range ck.check(c) {
				t.Error(err)
			}
		})
	}
}

var referenceChecks = []struct {
	name  string
	check func(*cluster) []error
}{
	{"namespaces", checkNamespaces},
	{"workload selectors", checkWorkloadSelectors},
	{"services", checkServices},
	{"statefulset service", checkStatefulSetService},
	{"disruption budgets", checkPDBs},
	{"volumes", checkVolumes},
	{"env", checkEnv},
	{"probes", checkProbes},
	{"scrape annotations", checkScrapeAnnotations},
	{"service accounts", checkServiceAccounts},
	{"rbac", checkRBAC},
	{"collector configs", checkCollectorConfigs},
}

// Every namespaced object is in the kit's Namespace.
func checkNamespaces(c *cluster) []error {
	var errs []error
	if len(c.namespaces) != 1 {
		return []error{fmt.Errorf("want one Namespace, have %d", len(c.namespaces))}
	}
	for _, n := range c.names {
		kind, k, _ := strings.Cut(n, " ")
		if kind == "Namespace" {
			continue
		}
		ns, _, ok := strings.Cut(k, "/")
		if !ok || c.namespaces[ns] == nil {
			errs = append(errs, fmt.Errorf("%s is not in the kit's namespace", n))
		}
	}
	return errs
}

// A workload's selector selects its own pods, and only matchLabels is used.
func checkWorkloadSelectors(c *cluster) []error {
	var errs []error
	for _, w := range c.workloads() {
		if w.selector == nil || len(w.selector.MatchExpressions) > 0 || !selects(w.selector.MatchLabels, w.pod.Labels) {
			errs = append(errs, fmt.Errorf("%s: selector %v does not select its pod template's labels %v", w, w.selector, w.pod.Labels))
		}
	}
	return errs
}

// Each Service selects pods of exactly one workload, and each of its ports
// targets a container port of those pods with the same protocol.
func checkServices(c *cluster) []error {
	var errs []error
	for k, svc := range c.services {
		ws := c.selected(svc.Namespace, svc.Spec.Selector)
		if len(ws) != 1 {
			errs = append(errs, fmt.Errorf("Service %s selects %d workloads (%v), want one", k, len(ws), ws))
			continue
		}
		w := ws[0]
		for _, sp := range svc.Spec.Ports {
			target := sp.TargetPort
			name, number := "", sp.Port
			switch {
			case target.Type == intstr.String:
				name = target.StrVal
			case target.IntVal != 0:
				number = target.IntVal
			}
			cp, ok := podPort(w.pod.Spec, name, number)
			if !ok {
				errs = append(errs, fmt.Errorf("Service %s port %s targets %s, which no container of %s has", k, sp.Name, target.String(), w))
				continue
			}
			if proto(sp.Protocol) != proto(cp.Protocol) {
				errs = append(errs, fmt.Errorf("Service %s port %s is %s, container port %s is %s", k, sp.Name, proto(sp.Protocol), cp.Name, proto(cp.Protocol)))
			}
		}
	}
	return errs
}

func proto(p corev1.Protocol) corev1.Protocol {
	if p == "" {
		return corev1.ProtocolTCP
	}
	return p
}

// A StatefulSet's serviceName is a headless Service selecting its pods:
// that Service gives each pod its DNS name and the EndpointSlices the
// front tier's resolver watches.
func checkStatefulSetService(c *cluster) []error {
	var errs []error
	for k, sts := range c.statefulSets {
		svc := c.services[sts.Namespace+"/"+sts.Spec.ServiceName]
		switch {
		case svc == nil:
			errs = append(errs, fmt.Errorf("StatefulSet %s: serviceName %q is no Service", k, sts.Spec.ServiceName))
		case svc.Spec.ClusterIP != corev1.ClusterIPNone:
			errs = append(errs, fmt.Errorf("StatefulSet %s: Service %s is not headless (clusterIP %q)", k, svc.Name, svc.Spec.ClusterIP))
		case !selects(svc.Spec.Selector, sts.Spec.Template.Labels):
			errs = append(errs, fmt.Errorf("StatefulSet %s: Service %s does not select its pods", k, svc.Name))
		}
	}
	return errs
}

func checkPDBs(c *cluster) []error {
	var errs []error
	for k, pdb := range c.pdbs {
		if pdb.Spec.Selector == nil || len(c.selected(pdb.Namespace, pdb.Spec.Selector.MatchLabels)) != 1 {
			errs = append(errs, fmt.Errorf("PodDisruptionBudget %s selects no single workload", k))
		}
	}
	return errs
}

// Every mount names a volume of the pod (or a claim template), every
// volume is mounted, and a ConfigMap volume's items are keys of an existing
// ConfigMap.
func checkVolumes(c *cluster) []error {
	var errs []error
	for _, w := range c.workloads() {
		declared := map[string]bool{}
		for _, v := range w.pod.Spec.Volumes {
			declared[v.Name] = true
			if cm := v.ConfigMap; cm != nil {
				m := c.configMaps[w.namespace+"/"+cm.Name]
				if m == nil {
					errs = append(errs, fmt.Errorf("%s: volume %s names ConfigMap %s, which the kit does not declare", w, v.Name, cm.Name))
					continue
				}
				for _, it := range cm.Items {
					if _, ok := m.Data[it.Key]; !ok {
						errs = append(errs, fmt.Errorf("%s: volume %s mounts key %s, which ConfigMap %s does not have", w, v.Name, it.Key, cm.Name))
					}
				}
			}
		}
		for _, pvc := range w.claims {
			if declared[pvc.Name] {
				errs = append(errs, fmt.Errorf("%s: %s is both a volume and a claim template", w, pvc.Name))
			}
			declared[pvc.Name] = true
		}
		mounted := map[string]bool{}
		for _, ctr := range w.pod.Spec.Containers {
			for _, m := range ctr.VolumeMounts {
				mounted[m.Name] = true
				if !declared[m.Name] {
					errs = append(errs, fmt.Errorf("%s: container %s mounts %s, which is no volume or claim template", w, ctr.Name, m.Name))
				}
			}
		}
		for name := range declared {
			if !mounted[name] {
				errs = append(errs, fmt.Errorf("%s: volume %s is never mounted", w, name))
			}
		}
	}
	return errs
}

// Every secretKeyRef and configMapKeyRef names a key that exists (the
// Secret's keys come from secret.example.yaml), and every fieldRef is one
// the downward API serves.
func checkEnv(c *cluster) []error {
	var errs []error
	downward := []string{"metadata.name", "metadata.namespace", "status.podIP", "spec.nodeName", "spec.serviceAccountName"}
	for _, w := range c.workloads() {
		for _, ctr := range w.pod.Spec.Containers {
			for _, e := range ctr.Env {
				src := e.ValueFrom
				switch {
				case src == nil:
				case src.SecretKeyRef != nil:
					ref := src.SecretKeyRef
					s := c.secrets[w.namespace+"/"+ref.Name]
					if s == nil {
						errs = append(errs, fmt.Errorf("%s: env %s reads Secret %s, which the kit does not describe", w, e.Name, ref.Name))
					} else if _, ok := s.StringData[ref.Key]; !ok {
						if _, ok := s.Data[ref.Key]; !ok {
							errs = append(errs, fmt.Errorf("%s: env %s reads key %s, which Secret %s does not have", w, e.Name, ref.Key, ref.Name))
						}
					}
				case src.ConfigMapKeyRef != nil:
					ref := src.ConfigMapKeyRef
					if m := c.configMaps[w.namespace+"/"+ref.Name]; m == nil || m.Data[ref.Key] == "" {
						errs = append(errs, fmt.Errorf("%s: env %s reads %s from ConfigMap %s: no such key", w, e.Name, ref.Key, ref.Name))
					}
				case src.FieldRef != nil:
					if !slices.Contains(downward, src.FieldRef.FieldPath) {
						errs = append(errs, fmt.Errorf("%s: env %s reads field %s", w, e.Name, src.FieldRef.FieldPath))
					}
				default:
					errs = append(errs, fmt.Errorf("%s: env %s has a source this check does not know", w, e.Name))
				}
			}
		}
	}
	return errs
}

// Probes use ports the container has.
func checkProbes(c *cluster) []error {
	var errs []error
	for _, w := range c.workloads() {
		for _, ctr := range w.pod.Spec.Containers {
			for what, p := range map[string]*corev1.Probe{"readiness": ctr.ReadinessProbe, "liveness": ctr.LivenessProbe, "startup": ctr.StartupProbe} {
				if p == nil {
					continue
				}
				var port intstr.IntOrString
				switch {
				case p.TCPSocket != nil:
					port = p.TCPSocket.Port
				case p.HTTPGet != nil:
					port = p.HTTPGet.Port
				default:
					continue
				}
				if _, ok := containerPort(ctr, port.StrVal, port.IntVal); !ok {
					errs = append(errs, fmt.Errorf("%s: %s probe port %s is no port of container %s", w, what, port.String(), ctr.Name))
				}
			}
		}
	}
	return errs
}

// prometheus.io annotations name a port the pod serves.
func checkScrapeAnnotations(c *cluster) []error {
	var errs []error
	for _, w := range c.workloads() {
		a := w.pod.Annotations
		if a["prometheus.io/scrape"] != "true" {
			errs = append(errs, fmt.Errorf("%s: pods are not marked for scraping (prometheus.io/scrape)", w))
			continue
		}
		port, err := strconv.Atoi(a["prometheus.io/port"])
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: prometheus.io/port %q is not a port number", w, a["prometheus.io/port"]))
			continue
		}
		if _, ok := podPort(w.pod.Spec, "", int32(port)); !ok {
			errs = append(errs, fmt.Errorf("%s: prometheus.io/port %d is no container port", w, port))
		}
		if p := a["prometheus.io/path"]; p != "/metrics" {
			errs = append(errs, fmt.Errorf("%s: prometheus.io/path %q, the collectors serve /metrics", w, p))
		}
	}
	return errs
}

// A pod's service account exists; pods that need no API access get no token.
func checkServiceAccounts(c *cluster) []error {
	var errs []error
	for _, w := range c.workloads() {
		sa := w.pod.Spec.ServiceAccountName
		if sa == "" {
			if m := w.pod.Spec.AutomountServiceAccountToken; m == nil || *m {
				errs = append(errs, fmt.Errorf("%s: the default service account's token is mounted; set automountServiceAccountToken: false", w))
			}
			continue
		}
		if c.serviceAccounts[w.namespace+"/"+sa] == nil {
			errs = append(errs, fmt.Errorf("%s: serviceAccountName %s is not declared", w, sa))
		}
	}
	return errs
}

// Each RoleBinding binds a declared Role to declared ServiceAccounts.
func checkRBAC(c *cluster) []error {
	var errs []error
	for k, rb := range c.roleBindings {
		if rb.RoleRef.Kind != "Role" || rb.RoleRef.APIGroup != rbacv1.GroupName || c.roles[rb.Namespace+"/"+rb.RoleRef.Name] == nil {
			errs = append(errs, fmt.Errorf("RoleBinding %s: roleRef %+v is no Role of the kit", k, rb.RoleRef))
		}
		for _, s := range rb.Subjects {
			if s.Kind != rbacv1.ServiceAccountKind || c.serviceAccounts[s.Namespace+"/"+s.Name] == nil {
				errs = append(errs, fmt.Errorf("RoleBinding %s: subject %+v is no ServiceAccount of the kit", k, s))
			}
		}
	}
	return errs
}

// grants reports whether the service account may do verb on resource in
// group within namespace through the kit's Roles.
func (c *cluster) grants(namespace, serviceAccount, group, resource, verb string) bool {
	for _, rb := range c.roleBindings {
		if rb.Namespace != namespace || !slices.ContainsFunc(rb.Subjects, func(s rbacv1.Subject) bool {
			return s.Kind == rbacv1.ServiceAccountKind && s.Name == serviceAccount && s.Namespace == namespace
		}) {
			continue
		}
		role := c.roles[rb.Namespace+"/"+rb.RoleRef.Name]
		if role == nil {
			continue
		}
		for _, r := range role.Rules {
			if slices.Contains(r.APIGroups, group) && slices.Contains(r.Resources, resource) && slices.Contains(r.Verbs, verb) {
				return true
			}
		}
	}
	return false
}

// mountedFile resolves a file path in a container to the ConfigMap key
// mounted there, if any.
func (c *cluster) mountedFile(w workload, ctr corev1.Container, file string) (cm, key string, ok bool) {
	for _, m := range ctr.VolumeMounts {
		rel, found := strings.CutPrefix(file, strings.TrimSuffix(m.MountPath, "/")+"/")
		if !found {
			continue
		}
		for _, v := range w.pod.Spec.Volumes {
			if v.Name != m.Name || v.ConfigMap == nil {
				continue
			}
			for _, it := range v.ConfigMap.Items {
				if path.Clean(it.Path) == rel {
					return v.ConfigMap.Name, it.Key, true
				}
			}
		}
	}
	return "", "", false
}

// persistentMount reports the claim template mounted over file's directory.
func persistentMount(w workload, ctr corev1.Container, file string) (string, bool) {
	for _, m := range ctr.VolumeMounts {
		if !strings.HasPrefix(file, strings.TrimSuffix(m.MountPath, "/")+"/") {
			continue
		}
		for _, pvc := range w.claims {
			if pvc.Name == m.Name {
				return pvc.Name, true
			}
		}
	}
	return "", false
}
