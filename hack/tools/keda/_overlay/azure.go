// Replaces every file of github.com/kedacore/keda/v2/pkg/scalers/azure in the modelpilot build of KEDA
// (hack/tools/keda/overlay). The real package pulls in the Azure SDK (identity, Event Hubs, Blob, Kusto...),
// hundreds of packages the Prometheus and cpu/memory scalers never call. Kept: what the remaining
// code references — the service principal parameter names and the Azure Managed Prometheus hook, which
// here reports "not Azure" unless the trigger asks for Azure workload identity.
package azure

import (
	"errors"
	"net/http"

	"github.com/go-logr/logr"

	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
)

const (
	ServicePrincipalAuthKey                      = "azureServicePrincipal"
	ServicePrincipalTenantIDKey                  = "azureServicePrincipalTenantId"
	ServicePrincipalClientIDKey                  = "azureServicePrincipalClientId"
	ServicePrincipalCloudKey                     = "azureServicePrincipalCloud"
	ServicePrincipalActiveDirectoryEndpointKey   = "azureServicePrincipalActiveDirectoryEndpoint"
	ServicePrincipalClientSecretKey              = "azureServicePrincipalClientSecret"
	ServicePrincipalClientCertificateKey         = "azureServicePrincipalClientCertificate"
	ServicePrincipalClientCertificatePasswordKey = "azureServicePrincipalClientCertificatePassword"
)

// ErrNotBuilt is returned wherever the trigger asks for Azure authentication.
var ErrNotBuilt = errors.New("azure authentication is not built into this KEDA (modelpilot build: prometheus, cpu, memory)")

func TryAndGetAzureManagedPrometheusHTTPRoundTripper(_ logr.Logger, podIdentity kedav1alpha1.AuthPodIdentity, _ map[string]string) (http.RoundTripper, error) {
	if podIdentity.Provider == kedav1alpha1.PodIdentityProviderAzureWorkload {
		return nil, ErrNotBuilt
	}
	return nil, nil
}
