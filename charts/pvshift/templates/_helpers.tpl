{{/*
Names. Kubernetes names are DNS labels (63 characters at most), and some
objects get a suffix, so the base is cut to 63 and suffixed names are checked
by the API server.
*/}}
{{- define "pvshift.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The fullname: the release name alone when it already contains the chart name,
so `helm install pvshift ...` names everything `pvshift`, which is also the
webhook configuration name src/permissions.ts lets pvshift update.
*/}}
{{- define "pvshift.fullname" -}}
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

{{- define "pvshift.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "pvshift.labels" -}}
helm.sh/chart: {{ include "pvshift.chart" . }}
{{ include "pvshift.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Selector labels: immutable on a Deployment once created, so they hold only what
never changes between upgrades.
*/}}
{{- define "pvshift.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pvshift.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "pvshift.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "pvshift.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false: name the existing ServiceAccount pvshift runs as" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Service in front of the webhook; its DNS names are in the serving certificate. */}}
{{- define "pvshift.webhookServiceName" -}}
{{- printf "%s-webhook" (include "pvshift.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The webhook configuration is cluster-scoped: the fullname keeps two releases apart. */}}
{{- define "pvshift.webhookConfigurationName" -}}
{{- include "pvshift.fullname" . }}
{{- end }}

{{/* The Secret holding the serving certificate, for each certificate mode. */}}
{{- define "pvshift.tlsSecretName" -}}
{{- $c := .Values.certificates }}
{{- if eq $c.mode "provided" }}
{{- $c.provided.secretName }}
{{- else if and (eq $c.mode "managed") $c.managed.secretName }}
{{- $c.managed.secretName }}
{{- else }}
{{- printf "%s-tls" (include "pvshift.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* The binary has two certificate sources: its own (managed) or files on disk. */}}
{{- define "pvshift.binaryCertMode" -}}
{{- if eq .Values.certificates.mode "managed" }}managed{{ else }}files{{ end }}
{{- end }}

{{/* Where the Secret is mounted in files mode. */}}
{{- define "pvshift.certDir" -}}
/etc/pvshift/tls
{{- end }}

{{/* repository:tag, or repository@digest when a digest is given. Takes {image, default tag}. */}}
{{- define "pvshift.imageRef" -}}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository (default .defaultTag .image.tag) }}
{{- end }}
{{- end }}

{{- define "pvshift.image" -}}
{{- include "pvshift.imageRef" (dict "image" .Values.image "defaultTag" .Chart.AppVersion) }}
{{- end }}

{{/* The copy pod image: the chart's own unless copy.image names another. */}}
{{- define "pvshift.copyImage" -}}
{{- $copy := .Values.copy.image }}
{{- if or $copy.repository $copy.tag $copy.digest }}
{{- $image := dict "repository" (default .Values.image.repository $copy.repository) "tag" (default .Values.image.tag $copy.tag) "digest" $copy.digest }}
{{- include "pvshift.imageRef" (dict "image" $image "defaultTag" .Chart.AppVersion) }}
{{- else }}
{{- include "pvshift.image" . }}
{{- end }}
{{- end }}

{{/*
A caBundle for clientConfig: the API server wants base64 of PEM. Accept PEM
(`--set-file ...=ca.crt`) and encode it, or a value already encoded.
*/}}
{{- define "pvshift.encodeCaBundle" -}}
{{- if contains "-----BEGIN" . }}
{{- b64enc . }}
{{- else }}
{{- . | nospace }}
{{- end }}
{{- end }}

{{/* The caBundle the chart writes; empty where someone else fills it in. */}}
{{- define "pvshift.caBundle" -}}
{{- $c := .Values.certificates }}
{{- if .Values.webhook.caBundle }}
{{- include "pvshift.encodeCaBundle" .Values.webhook.caBundle }}
{{- else if eq $c.mode "provided" }}
{{- include "pvshift.encodeCaBundle" $c.provided.caBundle }}
{{- end }}
{{- end }}

{{/*
Combinations the schema cannot express. Each fails the render with what to
change, before anything reaches the cluster.
*/}}
{{- define "pvshift.validate" -}}
{{- $c := .Values.certificates }}
{{- $w := .Values.webhook }}
{{- if not (has $c.mode (list "managed" "certManager" "provided")) }}
{{- fail (printf "certificates.mode %q is not one of managed, certManager, provided" $c.mode) }}
{{- end }}
{{- if eq $c.mode "provided" }}
{{- if not $c.provided.secretName }}
{{- fail "certificates.mode=provided needs certificates.provided.secretName: an existing kubernetes.io/tls Secret in the release namespace" }}
{{- end }}
{{- if not $c.provided.caBundle }}
{{- fail "certificates.mode=provided needs certificates.provided.caBundle: the CA (PEM) that signs the Secret's certificate, so the API server can trust the webhook" }}
{{- end }}
{{- end }}
{{- if and (eq $c.mode "certManager") $w.url }}
{{- fail "certificates.mode=certManager cannot be used with webhook.url: cert-manager issues the certificate for the in-cluster Service, not for a URL outside the cluster; use managed or provided" }}
{{- end }}
{{- if and (eq $c.mode "certManager") $w.caBundle }}
{{- fail "webhook.caBundle must stay empty with certificates.mode=certManager: cert-manager's cainjector writes the caBundle" }}
{{- end }}
{{- if and $w.caBundle (not $w.url) }}
{{- fail "webhook.caBundle is only for webhook.url; in-cluster, the caBundle comes from certificates (managed: pvshift patches it; provided: certificates.provided.caBundle)" }}
{{- end }}
{{- if and $w.url (not (hasPrefix "https://" $w.url)) }}
{{- fail (printf "webhook.url %q must start with https://: the API server calls webhooks over TLS only" $w.url) }}
{{- end }}
{{- if and $c.certManager.issuerRef (not $c.certManager.issuerRef.name) }}
{{- fail "certificates.certManager.issuerRef needs a name" }}
{{- end }}
{{- end }}
