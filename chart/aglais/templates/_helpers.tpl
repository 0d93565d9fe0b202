{{/* Names, labels and shared fragments. Every object name comes from here. */}}

{{/* Every object is named after the release (one release per name and namespace). */}}
{{- define "aglais.fullname" -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{- define "aglais.hub.name" -}}{{ include "aglais.fullname" . }}-hub{{- end -}}
{{- define "aglais.hub.dbClaim" -}}{{ include "aglais.fullname" . }}-hub-db{{- end -}}
{{- define "aglais.proxy.name" -}}{{ include "aglais.fullname" . }}-proxy{{- end -}}
{{- define "aglais.proxy.api" -}}{{ include "aglais.fullname" . }}-proxy-api{{- end -}}
{{- define "aglais.proxy.public" -}}{{ include "aglais.fullname" . }}-proxy-public{{- end -}}
{{- define "aglais.reservations.name" -}}{{ include "aglais.fullname" . }}-reservations{{- end -}}
{{- define "aglais.reservations.dbClaim" -}}{{ include "aglais.fullname" . }}-reservations-db{{- end -}}
{{- define "aglais.gitsync.name" -}}{{ include "aglais.fullname" . }}-gitsync{{- end -}}
{{/* one claim for the Git service's working copies and, with SQLite, its database */}}
{{- define "aglais.gitsync.dataClaim" -}}{{ include "aglais.fullname" . }}-gitsync-data{{- end -}}
{{- define "aglais.devIdp.name" -}}{{ include "aglais.fullname" . }}-idp{{- end -}}
{{- define "aglais.benchmark.name" -}}{{ include "aglais.fullname" . }}-benchmark{{- end -}}
{{- define "aglais.valuesSecret" -}}{{ include "aglais.fullname" . }}-values{{- end -}}
{{- define "aglais.tlsSecret" -}}{{ .Values.ingress.tls.secretName | default (printf "%s-tls" (include "aglais.fullname" .)) }}{{- end -}}
{{/* Cluster-scoped names carry the namespace: two releases may share a name. */}}
{{- define "aglais.clusterRole" -}}{{ .Release.Namespace }}-{{ include "aglais.fullname" . }}-user-namespaces{{- end -}}

{{/* The Secret holding every secret value: the generated one, or the admin's. */}}
{{- define "aglais.secretName" -}}
{{- .Values.secrets.existingSecret | default (printf "%s-secrets" (include "aglais.fullname" .)) -}}
{{- end -}}

{{- define "aglais.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* Labels; `component` (z2jh's label) is what users' NetworkPolicies select on. */}}
{{- define "aglais.selectorLabels" -}}
app.kubernetes.io/name: aglais
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "aglais.labels" -}}
{{ include "aglais.selectorLabels" . }}
component: {{ .component }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* In-cluster URLs, by <service>.<namespace>.svc: users' pods run in namespaces of their own,
where a bare Service name would not resolve. */}}
{{- define "aglais.svcHost" -}}{{ .name }}.{{ .root.Release.Namespace }}.svc{{- end -}}
{{- define "aglais.hub.url" -}}http://{{ include "aglais.svcHost" (dict "root" . "name" (include "aglais.hub.name" .)) }}:8081{{- end -}}
{{- define "aglais.proxy.apiUrl" -}}http://{{ include "aglais.svcHost" (dict "root" . "name" (include "aglais.proxy.api" .)) }}:8001{{- end -}}
{{- define "aglais.reservations.url" -}}
{{- .Values.reservations.url | default (printf "http://%s:%d" (include "aglais.svcHost" (dict "root" . "name" (include "aglais.reservations.name" .))) (int .Values.reservations.port)) -}}
{{- end -}}
{{- define "aglais.gitsync.url" -}}
{{- .Values.gitsync.url | default (printf "http://%s:%d" (include "aglais.svcHost" (dict "root" . "name" (include "aglais.gitsync.name" .))) (int .Values.gitsync.port)) -}}
{{- end -}}
{{/* The platform as users reach it, in the cluster: the proxy's public Service (the origin
alone, and with hub.baseUrl). */}}
{{- define "aglais.proxy.publicOrigin" -}}http://{{ include "aglais.svcHost" (dict "root" . "name" (include "aglais.proxy.public" .)) }}:{{ .Values.proxy.service.port }}{{- end -}}
{{- define "aglais.proxy.publicUrl" -}}{{ include "aglais.proxy.publicOrigin" . }}{{ .Values.hub.baseUrl }}{{- end -}}
{{- define "aglais.reservations.prefix" -}}{{ .Values.hub.baseUrl }}services/reservations/{{- end -}}
{{- define "aglais.gitsync.prefix" -}}{{ .Values.hub.baseUrl }}services/gitsync/{{- end -}}

{{/* Where users reach the platform: hub.publicUrl, else the Ingress's first host. */}}
{{- define "aglais.publicUrl" -}}
{{- if .Values.hub.publicUrl -}}
{{- .Values.hub.publicUrl | trimSuffix "/" -}}
{{- else if and .Values.ingress.enabled .Values.ingress.hosts -}}
{{- printf "%s://%s" (ternary "https" "http" .Values.ingress.tls.enabled) (first .Values.ingress.hosts) -}}
{{- end -}}
{{- end -}}

{{/* SQLite databases live on a claim; anything else is an external server. */}}
{{- define "aglais.hub.sqlite" -}}
{{- if and (hasPrefix "sqlite" .Values.hub.db.url) (not .Values.secrets.hubDbUrl) -}}true{{- end -}}
{{- end -}}
{{- define "aglais.reservations.sqlite" -}}
{{- if and (hasPrefix "sqlite" .Values.reservations.db.url) (not .Values.secrets.reservationsDbUrl) -}}true{{- end -}}
{{- end -}}

{{/* An env var read from the platform's Secret (never a plain value). */}}
{{- define "aglais.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ include "aglais.secretName" .root }}
      key: {{ .key }}
      {{- if .optional }}
      optional: true
      {{- end }}
{{- end -}}

{{/* A container's securityContext: the shared one plus the component's user. */}}
{{- define "aglais.containerSecurityContext" -}}
{{- $context := deepCopy .root.Values.containerSecurityContext -}}
{{- $_ := set $context "runAsUser" (int .user) -}}
{{- $_ := set $context "runAsGroup" (int .user) -}}
{{- toYaml $context -}}
{{- end -}}

{{- define "aglais.podSecurityContext" -}}
fsGroup: {{ .user }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "aglais.pullSecrets" -}}
{{- with .Values.image.pullSecrets -}}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end -}}

{{/* The NetworkPolicy peer of this release's pods of one component. */}}
{{- define "aglais.peer" -}}
podSelector:
  matchLabels:
    {{- include "aglais.selectorLabels" . | nindent 4 }}
{{- end -}}

{{/* Egress to DNS, on any address (cluster DNS or a node-local cache). */}}
{{- define "aglais.dnsEgress" -}}
- ports:
    - {protocol: UDP, port: 53}
    - {protocol: TCP, port: 53}
{{- end -}}

{{/* The issuer the development identity provider serves, and the check that auth.issuer is it. */}}
{{- define "aglais.devIdp.issuer" -}}
http://{{ include "aglais.svcHost" (dict "root" . "name" (include "aglais.devIdp.name" .)) }}:{{ .Values.devIdentityProvider.port }}
{{- end -}}
{{- define "aglais.devIdp.checked" -}}
{{- $issuer := include "aglais.devIdp.issuer" . -}}
{{- if ne (trimSuffix "/" .Values.auth.issuer) $issuer -}}
{{- fail (printf "devIdentityProvider.enabled: auth.issuer must be the development provider's URL, %s (it is %s)" $issuer .Values.auth.issuer) -}}
{{- end -}}
{{- if not (include "aglais.publicUrl" .) -}}
{{- fail "devIdentityProvider.enabled: set hub.publicUrl (or an Ingress host): the provider must know the hub's OAuth callback URL" -}}
{{- end -}}
{{- end -}}
