// Replaces azure_keyvault_handler.go, gcp_secretmanager_handler.go and aws_secretmanager_handler.go of
// github.com/kedacore/keda/v2/pkg/scaling/resolver in the modelpilot build of KEDA (hack/tools/keda/overlay):
// each real handler links a cloud SDK. A TriggerAuthentication that names one of these secret stores gets
// an error instead; Kubernetes Secrets, environment variables and HashiCorp Vault still resolve.
package resolver

import (
	"context"
	"errors"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
)

var errSecretStoreNotBuilt = errors.New("cloud secret stores are not built into this KEDA (modelpilot build)")

type AzureKeyVaultHandler struct{}

func NewAzureKeyVaultHandler(*kedav1alpha1.AzureKeyVault) *AzureKeyVaultHandler {
	return &AzureKeyVaultHandler{}
}

func (*AzureKeyVaultHandler) Initialize(context.Context, client.Client, logr.Logger, string, corev1listers.SecretLister) error {
	return errSecretStoreNotBuilt
}

func (*AzureKeyVaultHandler) Read(context.Context, string, string) (string, error) {
	return "", errSecretStoreNotBuilt
}

type GCPSecretManagerHandler struct{}

func NewGCPSecretManagerHandler(*kedav1alpha1.GCPSecretManager) *GCPSecretManagerHandler {
	return &GCPSecretManagerHandler{}
}

func (*GCPSecretManagerHandler) Initialize(context.Context, client.Client, logr.Logger, string, corev1listers.SecretLister) error {
	return errSecretStoreNotBuilt
}

func (*GCPSecretManagerHandler) Read(context.Context, string, string) (string, error) {
	return "", errSecretStoreNotBuilt
}

type AwsSecretManagerHandler struct{}

func NewAwsSecretManagerHandler(*kedav1alpha1.AwsSecretManager) *AwsSecretManagerHandler {
	return &AwsSecretManagerHandler{}
}

func (*AwsSecretManagerHandler) Initialize(context.Context, client.Client, logr.Logger, string, corev1listers.SecretLister, *corev1.PodSpec) error {
	return errSecretStoreNotBuilt
}

func (*AwsSecretManagerHandler) Read(context.Context, logr.Logger, string, string, string, string) (string, error) {
	return "", errSecretStoreNotBuilt
}

func (*AwsSecretManagerHandler) Stop() {}
