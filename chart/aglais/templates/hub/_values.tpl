{{/*
The values document the hub (and the reservation and Git services) read at /etc/aglais/values.yaml:
the chart's values, wired for the cluster. Secret values never go in it: they come from
the platform's Secret as environment variables.
*/}}
{{- define "aglais.hub.values" -}}
{{- $v := deepCopy .Values -}}
{{- if ne $v.spawner.kind "zeppelin" -}}
{{- fail "spawner.kind: the chart runs the zeppelin spawner (local-spark is for the demo)" -}}
{{- end -}}
{{- $_ := unset $v "secrets" -}}
{{- $_ := set $v.auth "clientSecret" "" -}}
{{- $_ := set $v.hub "publicUrl" (include "aglais.publicUrl" .) -}}
{{- if $v.reservations.enabled -}}
{{- $_ := set $v.reservations "url" (include "aglais.reservations.url" .) -}}
{{- end -}}
{{- /* The Git service in its own pod: the hub registers its Service; it reaches users'
servers through the proxy's public Service unless the admin named another address. */ -}}
{{- if include "aglais.gitsync.deployed" . -}}
{{- $_ := set $v.gitsync "url" (include "aglais.gitsync.url" .) -}}
{{- if not $v.gitsync.serversUrl -}}
{{- $_ := set $v.gitsync "serversUrl" (include "aglais.proxy.publicOrigin" .) -}}
{{- end -}}
{{- end -}}
{{- /* Users' pods talk only to this release's proxy, hub and reservation service, unless the admin chose. */ -}}
{{- $k8s := $v.spawner.kubernetes -}}
{{- $schemaDefault := dict "namespaceSelector" dict "podSelector" (dict "matchLabels" (dict "component" "proxy")) -}}
{{- if eq (toJson $k8s.hubSelector) (toJson $schemaDefault) -}}
{{- $_ := set $k8s "hubSelector" (dict
      "namespaceSelector" (dict "matchLabels" (dict "kubernetes.io/metadata.name" .Release.Namespace))
      "podSelector" (dict
        "matchLabels" (dict "app.kubernetes.io/instance" .Release.Name)
        "matchExpressions" (list (dict "key" "component" "operator" "In" "values" (list "proxy" "hub" "reservations"))))) -}}
{{- end -}}
{{- /* The proxy runs in its own pod; the hub listens for it and for users' pods. */ -}}
{{- $wiring := dict
    "JupyterHub" (dict
      "hub_bind_url" "http://0.0.0.0:8081"
      "hub_connect_url" (include "aglais.hub.url" .)
      "authenticate_prometheus" .Values.monitoring.authenticateHubMetrics)
    "ConfigurableHTTPProxy" (dict
      "should_start" false
      "api_url" (include "aglais.proxy.apiUrl" .)) -}}
{{- $_ := set $v.hub "config" (mergeOverwrite $wiring $v.hub.config) -}}
{{- toYaml $v -}}
{{- end -}}
