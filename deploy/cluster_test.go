package deploy

import (
	"fmt"
	"reflect"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// cluster is what the manifests would create, by kind and namespace/name.
type cluster struct {
	names           []string // "Kind namespace/name", in file order
	namespaces      map[string]*corev1.Namespace
	services        map[string]*corev1.Service
	configMaps      map[string]*corev1.ConfigMap
	secrets         map[string]*corev1.Secret
	serviceAccounts map[string]*corev1.ServiceAccount
	roles           map[string]*rbacv1.Role
	roleBindings    map[string]*rbacv1.RoleBinding
	deployments     map[string]*appsv1.Deployment
	statefulSets    map[string]*appsv1.StatefulSet
	pdbs            map[string]*policyv1.PodDisruptionBudget
}

func newCluster() *cluster {
	return &cluster{
		namespaces: map[string]*corev1.Namespace{}, services: map[string]*corev1.Service{},
		configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{},
		serviceAccounts: map[string]*corev1.ServiceAccount{}, roles: map[string]*rbacv1.Role{},
		roleBindings: map[string]*rbacv1.RoleBinding{}, deployments: map[string]*appsv1.Deployment{},
		statefulSets: map[string]*appsv1.StatefulSet{}, pdbs: map[string]*policyv1.PodDisruptionBudget{},
	}
}

func key(m metav1.Object) string {
	if m.GetNamespace() == "" {
		return m.GetName()
	}
	return m.GetNamespace() + "/" + m.GetName()
}

// put files v under its namespace/name and says whether one was there.
func put[T metav1.Object](m map[string]T, v T) (string, bool) {
	k := key(v)
	_, seen := m[k]
	m[k] = v
	return k, seen
}

// add files an object under its kind; a second object of the same kind and
// name is an error, as the API server would refuse it.
func (c *cluster) add(o object) error {
	var (
		k    string
		seen bool
	)
	switch v := o.obj.(type) {
	case *corev1.Namespace:
		k, seen = put(c.namespaces, v)
	case *corev1.Service:
		k, seen = put(c.services, v)
	case *corev1.ConfigMap:
		k, seen = put(c.configMaps, v)
	case *corev1.Secret:
		k, seen = put(c.secrets, v)
	case *corev1.ServiceAccount:
		k, seen = put(c.serviceAccounts, v)
	case *rbacv1.Role:
		k, seen = put(c.roles, v)
	case *rbacv1.RoleBinding:
		k, seen = put(c.roleBindings, v)
	case *appsv1.Deployment:
		k, seen = put(c.deployments, v)
	case *appsv1.StatefulSet:
		k, seen = put(c.statefulSets, v)
	case *policyv1.PodDisruptionBudget:
		k, seen = put(c.pdbs, v)
	default:
		return fmt.Errorf("%s: %T is not a kind this kit expects", o.file, o.obj)
	}
	kind := reflect.TypeOf(o.obj).Elem().Name()
	if seen {
		return fmt.Errorf("%s: a second %s %s", o.file, kind, k)
	}
	c.names = append(c.names, kind+" "+k)
	return nil
}

// workload is a Deployment or a StatefulSet: what runs pods.
type workload struct {
	kind, namespace, name string
	selector              *metav1.LabelSelector
	pod                   corev1.PodTemplateSpec
	claims                []corev1.PersistentVolumeClaim // StatefulSet volumeClaimTemplates
	sts                   *appsv1.StatefulSet
}

func (w workload) String() string { return w.kind + " " + w.namespace + "/" + w.name }

func (c *cluster) workloads() []workload {
	var out []workload
	for _, d := range c.deployments {
		out = append(out, workload{kind: "Deployment", namespace: d.Namespace, name: d.Name, selector: d.Spec.Selector, pod: d.Spec.Template})
	}
	for _, s := range c.statefulSets {
		out = append(out, workload{kind: "StatefulSet", namespace: s.Namespace, name: s.Name, selector: s.Spec.Selector,
			pod: s.Spec.Template, claims: s.Spec.VolumeClaimTemplates, sts: s})
	}
	return out
}

// selects reports whether a label selector matches a set of labels. Only
// matchLabels is used by this kit; matchExpressions would need more.
func selects(sel map[string]string, labels map[string]string) bool {
	if len(sel) == 0 {
		return false // an empty selector selects everything: never wanted here
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// selected lists the workloads in namespace whose pods a selector matches.
func (c *cluster) selected(namespace string, sel map[string]string) []workload {
	var out []workload
	for _, w := range c.workloads() {
		if w.namespace == namespace && selects(sel, w.pod.Labels) {
			out = append(out, w)
		}
	}
	return out
}

// containerPort finds a port of a container by name (a named targetPort or
// probe port) or by number.
func containerPort(ctr corev1.Container, name string, number int32) (corev1.ContainerPort, bool) {
	for _, p := range ctr.Ports {
		if (name != "" && p.Name == name) || (name == "" && p.ContainerPort == number) {
			return p, true
		}
	}
	return corev1.ContainerPort{}, false
}

// podPort finds a port in any container of a pod.
func podPort(pod corev1.PodSpec, name string, number int32) (corev1.ContainerPort, bool) {
	for _, ctr := range pod.Containers {
		if p, ok := containerPort(ctr, name, number); ok {
			return p, true
		}
	}
	return corev1.ContainerPort{}, false
}
