// Replaces azure_event_grid_topic_handler.go of github.com/kedacore/keda/v2/pkg/eventemitter in the
// modelpilot build of KEDA (hack/tools/keda/overlay): the real handler links the Azure Event Grid SDK.
// CloudEventSources with an HTTP destination still work; an Azure Event Grid destination logs this error.
package eventemitter

import (
	"context"
	"errors"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	eventingv1alpha1 "github.com/kedacore/keda/v2/apis/eventing/v1alpha1"
	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	"github.com/kedacore/keda/v2/pkg/eventemitter/eventdata"
)

type AzureEventGridTopicHandler struct{}

func NewAzureEventGridTopicHandler(context.Context, string, *eventingv1alpha1.AzureEventGridTopicSpec, map[string]string, kedav1alpha1.AuthPodIdentity, logr.Logger) (*AzureEventGridTopicHandler, error) {
	return nil, errors.New("azure event grid is not built into this KEDA (modelpilot build)")
}

func (*AzureEventGridTopicHandler) EmitEvent(eventdata.EventData, func(eventdata.EventData, error)) {}

func (*AzureEventGridTopicHandler) SetActiveStatus(metav1.ConditionStatus) {}

func (*AzureEventGridTopicHandler) GetActiveStatus() metav1.ConditionStatus {
	return metav1.ConditionFalse
}

func (*AzureEventGridTopicHandler) CloseHandler() {}
