{{/*
The platform's Secret as it exists in the cluster (what `lookup` returns), so that
generated secrets are kept on upgrade. `helm template` and `helm install --dry-run`
cannot reach a cluster: there lookup returns nothing and fresh values are generated.
tests/test_chart.py replaces this one template with the first render's Secret to check
that an upgrade keeps every value.
*/}}
{{- define "aglais.existingSecret" -}}
{{- toYaml (lookup "v1" "Secret" .Release.Namespace (printf "%s-secrets" (include "aglais.fullname" .))) -}}
{{- end -}}
