{{/* The chart's name, shortened to a DNS label. */}}
{{- define "featurerollout.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's full name, unless the release name already holds the chart name. */}}
{{- define "featurerollout.fullname" -}}
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

{{- define "featurerollout.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "featurerollout.selectorLabels" -}}
app.kubernetes.io/name: {{ include "featurerollout.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "featurerollout.labels" -}}
helm.sh/chart: {{ include "featurerollout.chart" . }}
{{ include "featurerollout.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: featurerollout
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "featurerollout.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "featurerollout.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "featurerollout.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/*
"true" when watch.namespaces holds a glob (Kopf's `*`, `?`, `[...]` or a `!` exclusion): the
namespaces are not known in advance, so RBAC stays cluster-wide and the operator lists namespaces.
*/}}
{{- define "featurerollout.watchGlobs" -}}
{{- range .Values.watch.namespaces -}}
{{- if regexMatch "[*?\\[!]" . -}}true{{- end -}}
{{- end -}}
{{- end -}}

{{/* "true" when RBAC is a Role per listed namespace rather than cluster-wide. */}}
{{- define "featurerollout.namespacedRBAC" -}}
{{- if and .Values.watch.namespaces (not (include "featurerollout.watchGlobs" .)) -}}true{{- end -}}
{{- end -}}

{{/* The rules for the namespaced resources the operator reads and writes. */}}
{{- define "featurerollout.namespacedRules" -}}
# The FeatureRollouts: Kopf lists and watches them; the operator reads each one fresh before
# deciding, and writes only the status subresource (no finalizers, no annotations).
- apiGroups: ["featurerollout.io"]
  resources: ["featurerollouts"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["featurerollout.io"]
  resources: ["featurerollouts/status"]
  verbs: ["patch"]
# MetricTemplates named by spec.analysis.metrics[].templateRef: one GET each at every look (no
# list, no watch), so that an edit counts from the next evaluation.
- apiGroups: ["featurerollout.io"]
  resources: ["metrictemplates"]
  verbs: ["get"]
# The configMap target: a flagd document, read then replaced (optimistic concurrency).
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "update"]
# The featureFlag target: an OpenFeature FeatureFlag, read then replaced.
- apiGroups: ["core.openfeature.dev"]
  resources: ["featureflags"]
  verbs: ["get", "update"]
# The httpRoute target: a Gateway API HTTPRoute, read then replaced (only the two weights change).
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["httproutes"]
  verbs: ["get", "update"]
# Prometheus credentials named by spec.analysis.prometheus.auth.secretName, the webhook
# target's token and CA (spec.target.webhook.secretRef, caSecretRef), webhook gates' tokens
# (spec.gates[].webhook.secretRef), and notification receivers' URLs and tokens
# (spec.notifications[].secretRef, tokenSecretRef).
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
# Events on FeatureRollouts (stage promotions, rollbacks), core v1. Kopf's own event posting is
# turned off (handlers.py), so nothing is written to events.k8s.io.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end -}}

{{/* The rules the operator needs at cluster scope whatever it watches. */}}
{{- define "featurerollout.clusterRules" -}}
# Kopf discovers the FeatureRollout resource (and notices CRD changes) through the CRDs.
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
# ClusterMetricTemplates named by templateRef (kind: ClusterMetricTemplate): one GET each at every
# look. Cluster-scoped, so granted here in both install modes (docs/metric-templates.md).
- apiGroups: ["featurerollout.io"]
  resources: ["clustermetrictemplates"]
  verbs: ["get"]
{{- if .Values.watch.namespaces }}
# With watch.namespaces set, Kopf observes the namespaces to find those it serves (the names or
# globs given), and follows new ones. Watching all namespaces needs no namespace access.
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end }}
{{- end -}}


{{/* The namespace of the leader-election Lease(s). */}}
{{- define "featurerollout.leaseNamespace" -}}
{{- default .Release.Namespace .Values.leaderElection.namespace -}}
{{- end -}}
