{{/* The release's names and labels. */}}
{{- define "regoauth.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "regoauth.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "regoauth.selectorLabels" -}}
app.kubernetes.io/name: {{ include "regoauth.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "regoauth.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "regoauth.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "regoauth.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "regoauth.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Secret names: an existing one, or the one the chart creates. */}}
{{- define "regoauth.storeSecret" -}}
{{- .Values.store.existingSecret | default (printf "%s-store" (include "regoauth.fullname" .)) }}
{{- end }}

{{- define "regoauth.signingSecret" -}}
{{- .Values.signing.existingSecret | default (printf "%s-signing" (include "regoauth.fullname" .)) }}
{{- end }}

{{- define "regoauth.refreshSecret" -}}
{{- .Values.refreshTokens.existingSecret | default (printf "%s-refresh" (include "regoauth.fullname" .)) }}
{{- end }}

{{/* Which of the values gives both listeners their TLS: existingSecret, generate, certManager
or plainHTTP. Exactly one: with none the chart would serve API keys and tokens in clear without
anyone having said so, and two would leave it to the chart to guess which was meant. */}}
{{- define "regoauth.tlsSource" -}}
{{- $tls := .Values.tls }}
{{- $chosen := list }}
{{- if $tls.existingSecret }}{{ $chosen = append $chosen "tls.existingSecret" }}{{ end }}
{{- if $tls.generate }}{{ $chosen = append $chosen "tls.generate" }}{{ end }}
{{- if dig "certManager" "issuerRef" "name" "" $tls }}{{ $chosen = append $chosen "tls.certManager.issuerRef.name" }}{{ end }}
{{- if $tls.plainHTTP }}{{ $chosen = append $chosen "tls.plainHTTP" }}{{ end }}
{{- if not $chosen }}
{{- fail "tls: choose how the token listener (tokens, the admin API) and the metrics listener get TLS, or API keys and tokens would cross the network in clear: tls.existingSecret (a kubernetes.io/tls Secret you keep), tls.generate: true (a self-signed certificate for the Service's names, made on first install and kept), tls.certManager.issuerRef.name (a cert-manager Certificate from that Issuer or ClusterIssuer), or tls.plainHTTP: true (plain HTTP, only behind an ingress or mesh that ends TLS in front of the pods, which config.trusted_proxies must then list)" }}
{{- end }}
{{- if gt (len $chosen) 1 }}
{{- fail (printf "tls: choose one source of TLS, not %s" (join " and " $chosen)) }}
{{- end }}
{{- /* helm lint goes on after a fail: no source then names none. */}}
{{- with $chosen }}{{ first . | trimPrefix "tls." | splitList "." | first }}{{ end }}
{{- end }}

{{/* The kubernetes.io/tls Secret both listeners serve with; empty when they serve plain HTTP
(tls.plainHTTP). Everything that depends on TLS being on asks this. */}}
{{- define "regoauth.tlsSecret" -}}
{{- $source := include "regoauth.tlsSource" . }}
{{- if eq $source "existingSecret" }}
{{- .Values.tls.existingSecret }}
{{- else if eq $source "generate" }}
{{- printf "%s-tls-self-signed" (include "regoauth.fullname" .) }}
{{- else if eq $source "certManager" }}
{{- printf "%s-tls" (include "regoauth.fullname" .) }}
{{- end }}
{{- end }}

{{/* The names a generated or cert-manager certificate holds: the Service's, short and long, in
tls.clusterDomain, then tls.extraDNSNames. As a JSON list. */}}
{{- define "regoauth.tlsDNSNames" -}}
{{- $svc := include "regoauth.fullname" . }}
{{- $ns := .Release.Namespace }}
{{- $names := list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.%s" $svc $ns (trimSuffix "." .Values.tls.clusterDomain)) }}
{{- range .Values.tls.extraDNSNames }}
{{- if not (has . $names) }}
{{- $names = append $names . }}
{{- end }}
{{- end }}
{{- toJson $names }}
{{- end }}

{{/* "true" when the store is a bolt file. The chart reads the URL only when it makes the Secret:
an existing Secret's URL is the operator's to keep to one replica. */}}
{{- define "regoauth.boltStore" -}}
{{- if and (not .Values.store.existingSecret) (hasPrefix "bolt://" .Values.store.url) }}true{{ end }}
{{- end }}

{{/* Where a bolt store's file is when no volume that outlives the pod holds it, as the end of a
sentence; empty when one does. The file is on the volume of the mount with the longest
mountPath above it (extraVolumeMounts, or the chart's /tmp): an emptyDir or a generic ephemeral
volume goes with the pod; without a mount, the file is in the container's own file system,
which goes with the container. A relative path cannot be placed, and counts as the latter. */}}
{{- define "regoauth.boltVolatile" -}}
{{- $path := trimPrefix "bolt://" .Values.store.url }}
{{- $mount := dict }}
{{- $longest := -1 }}
{{- range concat (list (dict "name" "tmp" "mountPath" "/tmp")) .Values.extraVolumeMounts }}
{{- $dir := trimSuffix "/" .mountPath }}
{{- if and (hasPrefix (printf "%s/" $dir) $path) (gt (len $dir) $longest) }}
{{- $mount = . }}
{{- $longest = len $dir }}
{{- end }}
{{- end }}
{{- if not $mount.name }}
{{- printf "%q is in the container's own file system (no volume of extraVolumeMounts holds it)" $path }}
{{- else }}
{{- $volume := dict }}
{{- range concat (list (dict "name" "tmp" "emptyDir" dict)) .Values.extraVolumes }}
{{- if eq .name $mount.name }}
{{- $volume = . }}
{{- end }}
{{- end }}
{{- if hasKey $volume "emptyDir" }}
{{- printf "%q is on the emptyDir volume %s" $path $mount.name }}
{{- else if hasKey $volume "ephemeral" }}
{{- printf "%q is on the ephemeral volume %s, deleted with the pod" $path $mount.name }}
{{- end }}
{{- end }}
{{- end }}

{{/* Where the pod sees its files. */}}
{{- define "regoauth.paths" -}}
config: /etc/regoauth/config/regoauth.yaml
storeURL: /etc/regoauth/store/url
signingKey: /etc/regoauth/signing/signing-key.pem
signingCert: /etc/regoauth/signing/signing-cert.pem
refreshSecret: /etc/regoauth/refresh/secret
tlsCert: /etc/regoauth/tls/tls.crt
tlsKey: /etc/regoauth/tls/tls.key
{{- end }}

{{/* regoauth.yaml: the values' config with what the chart owns set over it. */}}
{{- define "regoauth.config" -}}
{{- $paths := include "regoauth.paths" . | fromYaml }}
{{- $cfg := deepCopy .Values.config }}
{{- range $k := list "listen" "metrics" "signing" "refresh_tokens" }}
{{- if hasKey $cfg $k }}
{{- fail (printf "config.%s is set by the chart; use the chart's values instead" $k) }}
{{- end }}
{{- end }}
{{- $listen := dict "addr" ":5001" }}
{{- if include "regoauth.tlsSecret" . }}
{{- $_ := set $listen "tls" (dict "cert_file" $paths.tlsCert "key_file" $paths.tlsKey) }}
{{- end }}
{{- $_ := set $cfg "listen" $listen }}
{{- $metrics := dict "addr" (printf ":%d" (int .Values.metrics.port)) }}
{{- if include "regoauth.metricsTLS" . }}
{{- $_ := set $metrics "tls" (dict "cert_file" $paths.tlsCert "key_file" $paths.tlsKey) }}
{{- end }}
{{- $_ := set $cfg "metrics" $metrics }}
{{- $_ := set $cfg "signing" (dict "key_file" $paths.signingKey "cert_file" $paths.signingCert "kid" .Values.signing.kid) }}
{{- if .Values.refreshTokens.enabled }}
{{- $_ := set $cfg "refresh_tokens" (dict "secrets" (list (dict "file" $paths.refreshSecret)) "ttl" .Values.refreshTokens.ttl) }}
{{- end }}
{{- $store := deepCopy (default dict $cfg.store) }}
{{- if hasKey $store "url" }}
{{- fail "config.store.url is set by the chart; use store.existingSecret or store.url" }}
{{- end }}
{{- $_ := set $store "url" (dict "file" $paths.storeURL) }}
{{- $_ := set $cfg "store" $store }}
{{- toYaml $cfg }}
{{- end }}

{{/* "true" when /metrics is served with the token listener's certificate. */}}
{{- define "regoauth.metricsTLS" -}}
{{- if and (include "regoauth.tlsSecret" .) (not .Values.metrics.plainHTTP) }}true{{ end }}
{{- end }}

{{- define "regoauth.scheme" -}}
{{- if include "regoauth.tlsSecret" . }}HTTPS{{ else }}HTTP{{ end }}
{{- end }}
