{{- define "warden.labels" -}}
app.kubernetes.io/name: warden
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{- define "warden.selector" -}}
app.kubernetes.io/name: warden
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- /* One per release: two releases (a policy per node pool) never share it. */ -}}
{{- define "warden.serviceAccountName" -}}
{{- default .Release.Name .Values.serviceAccount.name }}
{{- end }}

{{- define "warden.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}
{{- end }}

{{- /* Where /metrics listens: the node's loopback, or the pod's IP. */ -}}
{{- define "warden.metricsHost" -}}
{{- if eq .Values.metrics.address "podIP" -}}
$(POD_IP)
{{- else -}}
{{ .Values.metrics.address }}
{{- end }}
{{- end }}

{{- /* Whether the AppArmor profile goes in the securityContext field (1.30+). */ -}}
{{- define "warden.appArmorField" -}}
{{- $mode := .Values.securityContext.appArmor -}}
{{- if or (eq $mode "field") (and (eq $mode "auto") (semverCompare ">=1.30-0" .Capabilities.KubeVersion.Version)) -}}
true
{{- end }}
{{- end }}

{{- define "warden.appArmorAnnotation" -}}
{{- $mode := .Values.securityContext.appArmor -}}
{{- if or (eq $mode "annotation") (and (eq $mode "auto") (not (semverCompare ">=1.30-0" .Capabilities.KubeVersion.Version))) -}}
true
{{- end }}
{{- end }}

{{- /* The policy the ConfigMap holds: `policy`, or the shipped cluster policy. */ -}}
{{- define "warden.policy" -}}
{{- if .Values.clusterPolicy -}}
{{ .Files.Get "files/cluster-policy.yaml" }}
{{- else -}}
{{ .Values.policy }}
{{- end }}
{{- end }}
