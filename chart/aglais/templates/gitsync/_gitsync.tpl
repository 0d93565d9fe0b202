{{/* The chart runs the Git service unless it is off or lives elsewhere (gitsync.url). */}}
{{- define "aglais.gitsync.deployed" -}}
{{- if and .Values.gitsync.enabled (not .Values.gitsync.url) -}}true{{- end -}}
{{- end -}}
