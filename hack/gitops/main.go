// Command gitops-health evaluates the health of a Kubernetes object the way
// Argo CD and Flux do, with their own code, so that tests/gitops.rs can
// prove the health checks README.md gives for them. Test tooling only.
//
//	gitops-health argocd <argocd-cm.yaml> <object.json>
//	gitops-health flux <kustomization.yaml> <object.json>
//
// Either file may be "-" for standard input. The first file is the
// configuration as a user writes it: the argocd-cm ConfigMap (or just its
// `data:` map), or the Flux Kustomization carrying `spec.healthCheckExprs`.
// The result is one line of JSON on standard output:
//
//	{"status":"Healthy","message":"..."}                  (argocd)
//	{"status":"Current","message":"","error":"..."}       (flux)
//
// An error of the health check itself (a Lua or CEL error) is part of the
// result, as the tools report it: Argo CD shows Unknown with the error as
// the message, Flux an Unknown status with the error attached, and keeps
// waiting. A usage or input error exits with status 1.
//
// The code paths are the tools' own, at the versions pinned in go.mod:
//
//   - Argo CD v3.2.12: the argocd-cm ConfigMap is read by
//     util/settings.SettingsManager.GetResourceOverrides (served by a fake
//     clientset instead of the API server), whose result goes through
//     util/lua.ResourceHealthOverrides into gitops-engine's
//     health.GetResourceHealth, exactly as controller/health.go does.
//     v3.2.12 is the newest Argo CD that builds from the module proxy with
//     Go 1.26: v3.3 to v3.5 replace their gitops-engine with a directory of
//     their repository, and v3.6 needs Go 1.27. The Lua health path
//     (util/lua/lua.go: runLua, decodeValue, ExecuteHealthLua) has not
//     changed in substance since.
//   - Flux: github.com/fluxcd/pkg/runtime v0.60.0 and
//     github.com/fluxcd/cli-utils v0.36.0-flux.13, the versions
//     kustomize-controller v1.6.0 (Flux v2.6) is built with:
//     cel.PollerWithCustomHealthChecks builds the status readers from
//     spec.healthCheckExprs, as the controller does, and the reader for the
//     object's group and kind reads its status (cli-utils' generic status
//     reader over cel.StatusEvaluator). Newer runtime versions need the
//     Kubernetes 0.36+ libraries, which Argo CD v3.2.12's cannot be
//     built with; their StatusEvaluator differs only in tolerating a
//     non-integer status.observedGeneration.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/argoproj/argo-cd/v3/util/lua"
	"github.com/argoproj/argo-cd/v3/util/settings"
	"github.com/argoproj/gitops-engine/pkg/health"
	"github.com/fluxcd/pkg/apis/kustomize"
	"github.com/fluxcd/pkg/runtime/cel"
	log "github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes/fake"
	"sigs.k8s.io/yaml"
)

const usage = `usage:
  gitops-health argocd <argocd-cm.yaml> <object.json>
  gitops-health flux <kustomization.yaml> <object.json>
either file may be - for standard input`

// result is what the command prints. Error is set only when the health
// check itself failed (Flux); Argo CD folds it into an Unknown status.
type result struct {
	Status  string `json:"status"`
	Message string `json:"message"`
	Error   string `json:"error,omitempty"`
}

func main() {
	// Argo CD's settings manager logs at info level about its informers.
	log.SetLevel(log.WarnLevel)
	log.SetOutput(os.Stderr)

	if len(os.Args) != 4 {
		fail(errors.New(usage))
	}
	config, err := readInput(os.Args[2])
	if err != nil {
		fail(err)
	}
	objectJSON, err := readInput(os.Args[3])
	if err != nil {
		fail(err)
	}
	obj := &unstructured.Unstructured{}
	if err := obj.UnmarshalJSON(objectJSON); err != nil {
		fail(fmt.Errorf("%s is not a Kubernetes object: %w", os.Args[3], err))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var res result
	switch os.Args[1] {
	case "argocd":
		res, err = argocdHealth(ctx, config, obj)
	case "flux":
		res, err = fluxHealth(ctx, config, obj)
	default:
		err = fmt.Errorf("unknown tool %q\n%s", os.Args[1], usage)
	}
	if err != nil {
		fail(err)
	}
	out := json.NewEncoder(os.Stdout)
	out.SetEscapeHTML(false)
	if err := out.Encode(res); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "gitops-health: %v\n", err)
	os.Exit(1)
}

// stdinUsed makes a second "-" an error instead of an empty input.
var stdinUsed bool

func readInput(path string) ([]byte, error) {
	if path != "-" {
		return os.ReadFile(path)
	}
	if stdinUsed {
		return nil, errors.New("only one input can be standard input")
	}
	stdinUsed = true
	return io.ReadAll(os.Stdin)
}

// argocdNamespace is where the fake clientset serves argocd-cm; any name
// does, as long as the settings manager is told the same.
const argocdNamespace = "argocd"

// argocdHealth evaluates the object with the health checks of an argocd-cm
// ConfigMap: the whole ConfigMap, or a document holding just its data map.
func argocdHealth(ctx context.Context, config []byte, obj *unstructured.Unstructured) (result, error) {
	var cm corev1.ConfigMap
	if err := yaml.UnmarshalStrict(config, &cm); err != nil {
		return result{}, fmt.Errorf("argocd-cm: %w", err)
	}
	if len(cm.Data) == 0 {
		return result{}, errors.New("argocd-cm: no data")
	}
	// The settings manager only sees ConfigMaps and Secrets labelled as
	// part of Argo CD, as a real installation labels them.
	partOf := map[string]string{"app.kubernetes.io/part-of": "argocd"}
	cm.ObjectMeta = metav1.ObjectMeta{Name: "argocd-cm", Namespace: argocdNamespace, Labels: partOf}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{
		Name: "argocd-secret", Namespace: argocdNamespace, Labels: partOf,
	}}
	clientset := fake.NewClientset(&cm, secret)
	overrides, err := settings.NewSettingsManager(ctx, clientset, argocdNamespace).GetResourceOverrides()
	if err != nil {
		return result{}, fmt.Errorf("argocd-cm: %w", err)
	}

	// controller/health.go: an error becomes an Unknown status carrying
	// the error as its message.
	hs, err := health.GetResourceHealth(obj, lua.ResourceHealthOverrides(overrides))
	if hs == nil {
		if err != nil {
			return result{}, err
		}
		return result{}, fmt.Errorf("argocd-cm has no health check for %s", lua.GetConfigMapKey(obj.GroupVersionKind()))
	}
	return result{Status: string(hs.Status), Message: hs.Message}, nil
}

// kustomization is the part of a Flux Kustomization read here.
type kustomization struct {
	Spec struct {
		HealthCheckExprs []kustomize.CustomHealthCheck `json:"healthCheckExprs"`
	} `json:"spec"`
}

// fluxHealth evaluates the object with the healthCheckExprs of a Flux
// Kustomization.
func fluxHealth(ctx context.Context, config []byte, obj *unstructured.Unstructured) (result, error) {
	var ks kustomization
	if err := yaml.Unmarshal(config, &ks); err != nil {
		return result{}, fmt.Errorf("kustomization: %w", err)
	}
	ctors, err := cel.PollerWithCustomHealthChecks(ctx, ks.Spec.HealthCheckExprs)
	if err != nil {
		return result{}, fmt.Errorf("kustomization: %w", err)
	}
	gk := obj.GroupVersionKind().GroupKind()
	for _, ctor := range ctors {
		// The generic status reader only needs the REST mapper to fetch
		// objects by reference; it is given the object itself here.
		reader := ctor(nil)
		if !reader.Supports(gk) {
			continue
		}
		rs, err := reader.ReadStatusForObject(ctx, nil, obj)
		if err != nil {
			return result{}, err
		}
		res := result{Status: rs.Status.String(), Message: rs.Message}
		if rs.Error != nil {
			res.Error = rs.Error.Error()
		}
		return res, nil
	}
	return result{}, fmt.Errorf("kustomization has no healthCheckExprs entry for %s", gk.String())
}
