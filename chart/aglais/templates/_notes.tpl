{{/* What `helm install` prints: the URL, the redirect URI to register, the next step. */}}
{{- define "aglais.notes" -}}
Aglais Hub is installed as release {{ .Release.Name }} in namespace {{ .Release.Namespace }}.

{{- $url := include "aglais.publicUrl" . }}
{{- $lb := and (not $url) (eq .Values.proxy.service.type "LoadBalancer") }}
{{- $callback := printf "%s%shub/oauth_callback" ($url | default (ternary "<hub.publicUrl>" "http://127.0.0.1:8000" $lb)) .Values.hub.baseUrl }}

1. Reach it:
{{- if .Values.ingress.enabled }}
     {{ $url | default "http://<the Ingress address>" }}{{ .Values.hub.baseUrl }}
{{- if .Values.ingress.tls.enabled }}
   (TLS certificate from Secret {{ include "aglais.tlsSecret" . }}{{ if or .Values.ingress.certManager.issuer .Values.ingress.certManager.clusterIssuer }}, issued by cert-manager{{ end }})
{{- end }}
{{- else if .Values.hub.publicUrl }}
     {{ $url }}{{ .Values.hub.baseUrl }}   (hub.publicUrl: the proxy's Service, or what forwards to it)
{{- else if eq .Values.proxy.service.type "LoadBalancer" }}
     kubectl -n {{ .Release.Namespace }} get service {{ include "aglais.proxy.public" . }}
   and open http://<EXTERNAL-IP>{{ .Values.hub.baseUrl }} (set hub.publicUrl to that URL).
{{- else }}
     kubectl -n {{ .Release.Namespace }} port-forward service/{{ include "aglais.proxy.public" . }} 8000:{{ .Values.proxy.service.port }}
   and open http://127.0.0.1:8000{{ .Values.hub.baseUrl }}
{{- end }}

{{- if .Values.devIdentityProvider.enabled }}

2. Log in at the development identity provider ({{ .Values.auth.issuer }}, never for
   production) as one of its users (devIdentityProvider.users):
{{- range $name, $user := .Values.devIdentityProvider.users }}
     {{ $name }}{{ if $user.groups }} (groups: {{ join ", " $user.groups }}){{ end }}
{{- end }}
{{- else }}

2. Next step: register this redirect URI for client "{{ .Values.auth.clientId }}" at
   {{ .Values.auth.issuer }}:
     {{ $callback }}
{{- if and (not .Values.auth.clientSecret) (not .Values.secrets.existingSecret) }}
   and give the client secret: helm upgrade {{ .Release.Name }} ... --set auth.clientSecret=...
{{- end }}
{{- end }}

3. Watch the hub start:
     kubectl -n {{ .Release.Namespace }} logs deployment/{{ include "aglais.hub.name" . }} -f
{{- if .Values.auth.adminGroups }}
   Members of {{ join ", " .Values.auth.adminGroups }} are admins ({{ .Values.hub.baseUrl }}hub/admin).
{{- end }}

docs/deploy.md in the source tree covers storage, data volumes, upgrades and backups.
{{- end -}}
