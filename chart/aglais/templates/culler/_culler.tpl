{{/*
The idle culler has no pod of its own: the hub runs jupyterhub-idle-culler as a managed
service (aglais_hub/culler.py, from the culler values), so it lives inside the hub's pod
and its NetworkPolicy, and reaches the hub API through the hub's Service. Its hub token
comes from the platform's Secret, so it stays the same across restarts.
*/}}
{{- define "aglais.culler.env" -}}
{{- if .Values.culler.enabled -}}
{{- include "aglais.secretEnv" (dict "root" . "name" "AGLAIS_CULLER_API_TOKEN" "key" "culler-api-token") -}}
{{- end -}}
{{- end -}}
