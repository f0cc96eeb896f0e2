{{- define "waf-admission.name" -}}waf-admission{{- end -}}

{{- define "waf-admission.fullname" -}}
{{- if contains "waf-admission" .Release.Name -}}{{ .Release.Name | trunc 63 | trimSuffix "-" }}{{- else -}}{{ printf "%s-waf-admission" .Release.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "waf-admission.selectorLabels" -}}
app.kubernetes.io/name: waf-admission
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "waf-admission.labels" -}}
{{ include "waf-admission.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "waf-admission.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}{{ printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}{{- else -}}{{ printf "%s:%s" .Values.image.repository $tag }}{{- end -}}
{{- end -}}

{{- define "waf-admission.tlsSecret" -}}{{ include "waf-admission.fullname" . }}-tls{{- end -}}

{{- define "waf-admission.webhookCommon" -}}
admissionReviewVersions: [v1]
sideEffects: NoneOnDryRun
timeoutSeconds: {{ .root.Values.webhook.timeoutSeconds }}
failurePolicy: {{ .failurePolicy }}
matchPolicy: Equivalent
clientConfig:
  service:
    name: {{ include "waf-admission.fullname" .root }}
    namespace: {{ .root.Release.Namespace }}
    path: {{ .path }}
    port: 443
  {{- if .caBundle }}
  caBundle: {{ .caBundle }}
  {{- end }}
namespaceSelector:
  matchExpressions:
  - key: kubernetes.io/metadata.name
    operator: NotIn
    values: [kube-system, {{ .root.Release.Namespace }}]
{{- end -}}

{{- define "waf-admission.workloadRules" -}}
- apiGroups: [apps]
  apiVersions: [v1]
  operations: [CREATE, UPDATE]
  resources: {{ if .Values.webhook.extraKinds }}[deployments, statefulsets, replicasets]{{ else }}[deployments, statefulsets]{{ end }}
  scope: Namespaced
- apiGroups: [""]
  apiVersions: [v1]
  operations: [CREATE, UPDATE]
  # pods/ephemeralcontainers: `kubectl debug` adds its container there.
  resources: [pods, pods/ephemeralcontainers]
  scope: Namespaced
{{- if .Values.webhook.extraKinds }}
- apiGroups: [batch]
  apiVersions: [v1]
  operations: [CREATE, UPDATE]
  resources: [jobs, cronjobs]
  scope: Namespaced
{{- end }}
{{- end -}}


{{- /*
Pods, ReplicaSets and Jobs that a Deployment, ReplicaSet, StatefulSet,
DaemonSet, Job or CronJob owns are judged through that owner: the engine's
decision::JUDGED_THROUGH_OWNER. This line is decision::owner_match_condition()
and a test fails when the two differ. Anything else an operator owns (a
RayCluster, an Argo Rollout) is sent and judged, as `check` judges it.
*/ -}}
{{- define "waf-admission.ownerCondition" -}}
(has(request.subResource) && request.subResource == 'ephemeralcontainers') || !(request.kind.kind in ['Pod', 'ReplicaSet', 'Job'] && has(object.metadata.ownerReferences) && object.metadata.ownerReferences.exists(r, has(r.controller) && r.controller && ((r.apiVersion.startsWith('apps/') && r.kind in ['Deployment', 'ReplicaSet', 'StatefulSet', 'DaemonSet']) || (r.apiVersion.startsWith('batch/') && r.kind in ['Job', 'CronJob']))))
{{- end -}}

{{- /* auditInterval (a Go duration: 300ms, 30s, 5m) in seconds, for alert thresholds. */ -}}
{{- define "waf-admission.auditIntervalSeconds" -}}
{{- $v := .Values.auditInterval -}}
{{- $n := regexFind "^[0-9]+" $v | int -}}
{{- if hasSuffix "ms" $v -}}{{ divf $n 1000 }}{{- else if hasSuffix "m" $v -}}{{ mul $n 60 }}{{- else -}}{{ $n }}{{- end -}}
{{- end -}}

{{- /* Four auditIntervals as a PromQL range: the last run stays in sight after the Lease holder that ran it has gone. */ -}}
{{- define "waf-admission.auditWindow" -}}
{{- $v := .Values.auditInterval -}}
{{- printf "%d%s" (mul 4 (regexFind "^[0-9]+" $v | int)) (regexFind "[a-z]+$" $v) -}}
{{- end -}}
