package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// manifestDir holds the Kubernetes manifests; secretExample is the Secret's
// shape, shipped as an example and not applied (its values are placeholders).
const (
	manifestDir   = "kubernetes"
	kustomization = "kustomization.yaml"
	secretExample = "secret.example.yaml"
)

// decoder decodes the API types the manifests use, strictly: an unknown or
// duplicated field is an error, as `kubectl apply --validate=strict` makes it.
var decoder = func() runtime.Decoder {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme, rbacv1.AddToScheme, policyv1.AddToScheme} {
		if err := add(scheme); err != nil {
			panic(err)
		}
	}
	return serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
}()

// object is one decoded manifest document and where it came from.
type object struct {
	file string
	obj  runtime.Object
}

// decodeManifests strictly decodes every document of a multi-document YAML
// file.
func decodeManifests(file string, data []byte) ([]object, error) {
	var out []object
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for i := 1; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		obj, _, err := decoder.Decode(doc, nil, nil)
		if err != nil {
			return nil, &docError{file, i, err}
		}
		out = append(out, object{file, obj})
	}
}

type docError struct {
	file string
	doc  int
	err  error
}

func (e *docError) Error() string {
	return e.file + " document " + strconv.Itoa(e.doc) + ": " + e.err.Error()
}

func stripComments(doc []byte) []byte {
	var b bytes.Buffer
	for _, line := range strings.Split(string(doc), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.Bytes()
}

// manifestFiles lists the YAML files under kubernetes/ but the kustomization.
func manifestFiles(t *testing.T) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(manifestDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, p := range paths {
		if name := filepath.Base(p); name != kustomization {
			files = append(files, name)
		}
	}
	if len(files) == 0 {
		t.Fatalf("no manifests in %s", manifestDir)
	}
	return files
}

// readManifests reads every manifest file by name.
func readManifests(t *testing.T) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	for _, name := range manifestFiles(t) {
		data, err := os.ReadFile(filepath.Join(manifestDir, name))
		if err != nil {
			t.Fatal(err)
		}
		files[name] = data
	}
	return files
}

// loadCluster decodes every manifest into the objects it declares.
func loadCluster(t *testing.T) *cluster {
	t.Helper()
	c, err := decodeCluster(readManifests(t))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func decodeCluster(files map[string][]byte) (*cluster, error) {
	c := newCluster()
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		objs, err := decodeManifests(name, files[name])
		if err != nil {
			return nil, err
		}
		if len(objs) == 0 {
			return nil, fmt.Errorf("%s declares no object", name)
		}
		for _, o := range objs {
			if err := c.add(o); err != nil {
				return nil, err
			}
		}
	}
	return c, nil
}

func TestManifestsDecodeStrictly(t *testing.T) {
	c := loadCluster(t)
	// The two-tier layout, object by object.
	for _, want := range []string{
		"Namespace observability",
		"ServiceAccount observability/tenantguard-lb", "Role observability/tenantguard-lb", "RoleBinding observability/tenantguard-lb",
		"ConfigMap observability/tenantguard-lb-config", "Deployment observability/tenantguard-lb", "Service observability/tenantguard-lb",
		"ConfigMap observability/tenantguard-config", "Service observability/tenantguard", "StatefulSet observability/tenantguard",
		"PodDisruptionBudget observability/tenantguard", "Secret observability/tenantguard",
	} {
		if !slices.Contains(c.names, want) {
			t.Errorf("no %s in %s (have %v)", want, manifestDir, c.names)
		}
	}
}

// The decoder is strict: each manifest with a field the API does not know,
// or a field given twice, is refused, naming the field.
func TestStrictDecodingRejectsUnknownFields(t *testing.T) {
	for name, data := range readManifests(t) {
		for what, bad := range map[string][]byte{
			"an unknown field":  bytes.Replace(data, []byte("\nmetadata:\n"), []byte("\nmetadata:\n  labelz: {a: b}\n"), 1),
			"a duplicate field": bytes.Replace(data, []byte("\nmetadata:\n"), []byte("\nmetadata:\n  name: twice\n"), 1),
		} {
			if bytes.Equal(bad, data) {
				t.Fatalf("%s: no top-level metadata to change", name)
			}
			_, err := decodeManifests(name, bad)
			if err == nil || !strings.Contains(err.Error(), "strict decoding error") {
				t.Errorf("%s with %s: want a strict decoding error, got %v", name, what, err)
			}
		}
	}
}

// kubectl apply -k applies every manifest but the Secret example, and the
// images it pins are the workloads' images.
func TestKustomizationListsEveryManifest(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(manifestDir, kustomization))
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
		Resources  []string `json:"resources"`
		Images     []struct {
			Name   string `json:"name"`
			NewTag string `json:"newTag"`
		} `json:"images"`
	}
	if err := yaml.UnmarshalStrict(data, &k); err != nil {
		t.Fatalf("%s: %v", kustomization, err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		t.Errorf("%s is %s %s", kustomization, k.APIVersion, k.Kind)
	}
	var want []string
	for _, f := range manifestFiles(t) {
		if f != secretExample {
			want = append(want, f)
		}
	}
	got := slices.Clone(k.Resources)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("%s resources %v, want every manifest but %s: %v", kustomization, k.Resources, secretExample, want)
	}
	c := loadCluster(t)
	var images []string
	for _, w := range c.workloads() {
		for _, ctr := range w.pod.Spec.Containers {
			repo, tag, _ := strings.Cut(ctr.Image, ":")
			images = append(images, repo)
			i := slices.IndexFunc(k.Images, func(im struct {
				Name   string `json:"name"`
				NewTag string `json:"newTag"`
			}) bool {
				return im.Name == repo
			})
			if i < 0 {
				t.Errorf("%s: image %s is not pinned in %s", w, repo, kustomization)
			} else if k.Images[i].NewTag != tag {
				t.Errorf("%s: image tag %s, %s pins %s", w, tag, kustomization, k.Images[i].NewTag)
			}
		}
	}
	if len(k.Images) != len(images) {
		t.Errorf("%s pins %d images, the workloads run %v", kustomization, len(k.Images), images)
	}
}
