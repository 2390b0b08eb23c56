{{- define "sample.image" -}}
{{ .root.Values.imageRegistry }}/{{ .name }}:{{ index .root.Values.images .name }}
{{- end -}}

{{- define "sample.scheduling" -}}
{{- $sel := index .root.Values.nodeSelectors .service | default dict }}
{{- if $sel }}
nodeSelector:
  {{- toYaml $sel | nindent 2 }}
{{- end }}
{{- if .root.Values.tolerations }}
tolerations:
  {{- toYaml .root.Values.tolerations | nindent 2 }}
{{- end }}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
