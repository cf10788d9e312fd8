{{/*
The objects' names are fixed: the controller's code and the sidecars' configuration refer to
them (Service and Lease meltemi-controller).
*/}}
{{- define "meltemi.name" -}}meltemi-controller{{- end }}

{{- define "meltemi.serviceAccountName" -}}
{{- default "meltemi-controller" .Values.serviceAccount.name }}
{{- end }}

{{- define "meltemi.selectorLabels" -}}
app.kubernetes.io/name: meltemi-controller
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "meltemi.labels" -}}
{{ include "meltemi.selectorLabels" . }}
app.kubernetes.io/part-of: meltemi
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{- define "meltemi.leaseNamespace" -}}
{{- default .Release.Namespace .Values.leaderElection.namespace }}
{{- end }}

{{- define "meltemi.xdsServiceAddress" -}}
{{- default (printf "meltemi-controller.%s.svc:%d" .Release.Namespace (int .Values.service.grpcXdsPort)) .Values.istio.xdsServiceAddress }}
{{- end }}
