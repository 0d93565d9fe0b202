{{/* The chart runs the reservation service unless it is off or lives elsewhere (reservations.url). */}}
{{- define "aglais.reservations.deployed" -}}
{{- if and .Values.reservations.enabled (not .Values.reservations.url) -}}true{{- end -}}
{{- end -}}
