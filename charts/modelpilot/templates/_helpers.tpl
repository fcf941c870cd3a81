{{/* Names, labels and small shared snippets of the modelpilot chart. */}}

{{/* Chart name, overridable. */}}
{{- define "modelpilot.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-qualified name; the release name alone when it already contains the chart name. */}}
{{- define "modelpilot.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Name of the operator workload and of objects that belong to it. */}}
{{- define "modelpilot.operator.fullname" -}}
{{- printf "%s-operator" (include "modelpilot.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "modelpilot.mlflow.fullname" -}}
{{- printf "%s-mlflow" (include "modelpilot.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "modelpilot.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels every object carries. */}}
{{- define "modelpilot.labels" -}}
app.kubernetes.io/name: {{ include "modelpilot.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{ include "modelpilot.metaLabels" . }}
{{- end -}}

{{/* The labels besides name and instance, for pod templates that add those through their selector. */}}
{{- define "modelpilot.metaLabels" -}}
helm.sh/chart: {{ include "modelpilot.chart" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: modelpilot
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector of the operator pods: stable across upgrades, so no version in it. */}}
{{- define "modelpilot.operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modelpilot.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "modelpilot.mlflow.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modelpilot.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: mlflow
{{- end -}}

{{- define "modelpilot.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "modelpilot.operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Kopf peering object the replicas elect through. */}}
{{- define "modelpilot.peeringName" -}}
{{- default (include "modelpilot.operator.fullname" .) .Values.operator.peering.name -}}
{{- end -}}

{{/* Secret that holds the HMAC key of MLflow webhooks. */}}
{{- define "modelpilot.webhookSecretName" -}}
{{- default (printf "%s-webhook" (include "modelpilot.operator.fullname" .)) .Values.webhook.existingSecret -}}
{{- end -}}

{{/* The namespaces the operator serves; empty means the whole cluster. */}}
{{- define "modelpilot.clusterWide" -}}
{{- if empty .Values.operator.watchNamespaces -}}true{{- end -}}
{{- end -}}

{{/* Image reference: a digest wins over a tag; the tag defaults to the chart's appVersion. */}}
{{- define "modelpilot.image" -}}
{{- if .digest -}}
{{- printf "%s@%s" .repository .digest -}}
{{- else -}}
{{- printf "%s:%s" .repository (required "an image tag is required" .tag) -}}
{{- end -}}
{{- end -}}

{{- define "modelpilot.operator.image" -}}
{{- $image := deepCopy .Values.operator.image -}}
{{- $_ := set $image "tag" (default .Chart.AppVersion .Values.operator.image.tag) -}}
{{- include "modelpilot.image" $image -}}
{{- end -}}

{{/* URL the operator and the examples reach MLflow at: the bundled server or an external one. */}}
{{- define "modelpilot.mlflowUrl" -}}
{{- if .Values.mlflow.enabled -}}
{{- printf "http://%s.%s.svc:%d" (include "modelpilot.mlflow.fullname" .) .Release.Namespace (int .Values.mlflow.service.port) -}}
{{- else -}}
{{- .Values.mlflow.externalUrl -}}
{{- end -}}
{{- end -}}

{{/*
What scales the serving tracks: "keda" (ScaledObjects for request-rate autoscaling) or "hpa". With
operator.autoscaler "auto", keda when the cluster serves KEDA's ScaledObject API at install or upgrade time.
*/}}
{{- define "modelpilot.autoscaler" -}}
{{- if eq .Values.operator.autoscaler "auto" -}}
{{- ternary "keda" "hpa" (.Capabilities.APIVersions.Has "keda.sh/v1alpha1/ScaledObject") -}}
{{- else -}}
{{- .Values.operator.autoscaler -}}
{{- end -}}
{{- end -}}
