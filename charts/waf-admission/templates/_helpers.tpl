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

{{- /*
Every pod-template kind: each is a way to a running pod. The engine's list
is workload::WorkloadKind::ALL, and a test holds the two equal.
*/ -}}
{{- define "waf-admission.workloadRules" -}}
- apiGroups: [apps]
  apiVersions: [v1]
  operations: [CREATE, UPDATE]
  resources: [deployments, statefulsets, daemonsets, replicasets]
  scope: Namespaced
- apiGroups: [""]
  apiVersions: [v1]
  operations: [CREATE, UPDATE]
  # pods/ephemeralcontainers: `kubectl debug` adds its container there.
  resources: [pods, pods/ephemeralcontainers, replicationcontrollers]
  scope: Namespaced
- apiGroups: [batch]
  apiVersions: [v1]
  operations: [CREATE, UPDATE]
  resources: [jobs, cronjobs]
  scope: Namespaced
{{- end -}}

{{- /*
The AI-serving resources, judged in their own fields (validating only: an
operator merges them into what it runs, so they are never patched). A
cluster without their CRDs never sends them. With the rules above, the
engine's WorkloadKind::ALL; a test holds the two equal.
*/ -}}
{{- define "waf-admission.aiRules" -}}
- apiGroups: [serving.kserve.io]
  apiVersions: [v1beta1, v1alpha1, v1alpha2]
  operations: [CREATE, UPDATE]
  resources: [inferenceservices, llminferenceservices]
  scope: Namespaced
- apiGroups: [leaderworkerset.x-k8s.io]
  apiVersions: [v1]
  operations: [CREATE, UPDATE]
  resources: [leaderworkersets]
  scope: Namespaced
- apiGroups: [kaito.sh]
  apiVersions: [v1beta1, v1alpha1]
  operations: [CREATE, UPDATE]
  resources: [workspaces, inferencesets]
  scope: Namespaced
{{- end -}}

{{- /*
Replica floors hold however replicas are set: the scale subresource is
judged as a change of spec.replicas, an autoscaler against the workload it
targets (validating only: neither is ever patched).
*/ -}}
{{- define "waf-admission.replicaRules" -}}
- apiGroups: [apps]
  apiVersions: [v1]
  operations: [UPDATE]
  resources: [deployments/scale, statefulsets/scale, replicasets/scale]
  scope: Namespaced
- apiGroups: [""]
  apiVersions: [v1]
  operations: [UPDATE]
  resources: [replicationcontrollers/scale]
  scope: Namespaced
- apiGroups: [leaderworkerset.x-k8s.io]
  apiVersions: [v1]
  operations: [UPDATE]
  resources: [leaderworkersets/scale]
  scope: Namespaced
- apiGroups: [kaito.sh]
  apiVersions: [v1beta1, v1alpha1]
  operations: [UPDATE]
  resources: [inferencesets/scale]
  scope: Namespaced
- apiGroups: [autoscaling]
  apiVersions: [v2]
  operations: [CREATE, UPDATE]
  resources: [horizontalpodautoscalers]
  scope: Namespaced
- apiGroups: [keda.sh]
  apiVersions: [v1alpha1]
  operations: [CREATE, UPDATE]
  resources: [scaledobjects]
  scope: Namespaced
{{- end -}}

{{- /*
What a core controller makes from a template judged at apply (a Pod of a
ReplicaSet, a ReplicaSet of a Deployment, a Job of a CronJob, a scale by the
HPA controller) is not sent: the requester, authenticated by the apiserver,
says who made it, never the object's ownerReferences. This line is
ownership::requester_match_condition() and a test fails when the two differ.
*/ -}}
{{- define "waf-admission.requesterCondition" -}}
!((request.resource.group == 'apps' && request.resource.resource == 'replicasets' && (!has(request.subResource) || request.subResource == '') && request.userInfo.username in ['system:serviceaccount:kube-system:deployment-controller', 'system:kube-controller-manager']) || (request.resource.group == '' && request.resource.resource == 'pods' && (!has(request.subResource) || request.subResource == '') && request.userInfo.username in ['system:serviceaccount:kube-system:replicaset-controller', 'system:serviceaccount:kube-system:statefulset-controller', 'system:serviceaccount:kube-system:daemon-set-controller', 'system:serviceaccount:kube-system:replication-controller', 'system:serviceaccount:kube-system:job-controller', 'system:kube-controller-manager']) || (request.resource.group == 'batch' && request.resource.resource == 'jobs' && (!has(request.subResource) || request.subResource == '') && request.userInfo.username in ['system:serviceaccount:kube-system:cronjob-controller', 'system:kube-controller-manager']) || (request.resource.group == 'apps' && request.resource.resource == 'deployments' && has(request.subResource) && request.subResource == 'scale' && request.userInfo.username in ['system:serviceaccount:kube-system:horizontal-pod-autoscaler', 'system:kube-controller-manager']) || (request.resource.group == 'apps' && request.resource.resource == 'statefulsets' && has(request.subResource) && request.subResource == 'scale' && request.userInfo.username in ['system:serviceaccount:kube-system:horizontal-pod-autoscaler', 'system:kube-controller-manager']) || (request.resource.group == 'apps' && request.resource.resource == 'replicasets' && has(request.subResource) && request.subResource == 'scale' && request.userInfo.username in ['system:serviceaccount:kube-system:horizontal-pod-autoscaler', 'system:kube-controller-manager']) || (request.resource.group == '' && request.resource.resource == 'replicationcontrollers' && has(request.subResource) && request.subResource == 'scale' && request.userInfo.username in ['system:serviceaccount:kube-system:horizontal-pod-autoscaler', 'system:kube-controller-manager']))
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
