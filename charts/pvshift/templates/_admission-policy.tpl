{{/* The ValidatingAdmissionPolicy that keeps pvshift's records pvshift's, and its binding. */}}
{{- define "pvshift.admissionPolicyName" -}}
{{- printf "%s-records" (include "pvshift.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The user name pvshift's ServiceAccount authenticates as. */}}
{{- define "pvshift.serviceAccountUser" -}}
{{- printf "system:serviceaccount:%s:%s" .Release.Namespace (include "pvshift.serviceAccountName" .) }}
{{- end }}
