{{/* The name of every object, the release name unless it already says lattice-xds. */}}
{{- define "lattice-xds.fullname" -}}
{{- if contains "lattice-xds" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-lattice-xds" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "lattice-xds.selectorLabels" -}}
app.kubernetes.io/name: lattice-xds
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "lattice-xds.labels" -}}
{{ include "lattice-xds.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The image by digest when one is given (immutable), else by tag. */}}
{{- define "lattice-xds.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The Service's in-cluster name: what sidecars and the API server call. */}}
{{- define "lattice-xds.serviceHost" -}}
{{- printf "%s.%s.svc" (include "lattice-xds.fullname" .) .Release.Namespace -}}
{{- end -}}

{{- define "lattice-xds.webhookCaSecret" -}}
{{- printf "%s-webhook-ca" (include "lattice-xds.fullname" .) -}}
{{- end -}}

{{- define "lattice-xds.webhookCertSecret" -}}
{{- printf "%s-webhook-tls" (include "lattice-xds.fullname" .) -}}
{{- end -}}

{{- define "lattice-xds.xdsCertSecret" -}}
{{- printf "%s-xds-tls" (include "lattice-xds.fullname" .) -}}
{{- end -}}

{{- define "lattice-xds.caCertSecret" -}}
{{- printf "%s-ca" (include "lattice-xds.fullname" .) -}}
{{- end -}}

{{/* The names the controller's certificates are valid for. */}}
{{- define "lattice-xds.serviceNames" -}}
{{- $name := include "lattice-xds.fullname" . -}}
{{- printf "%s,%s.%s,%s,%s.cluster.local" $name $name .Release.Namespace (include "lattice-xds.serviceHost" .) (include "lattice-xds.serviceHost" .) -}}
{{- end -}}

{{/* The ConfigMap holding the CA of the ADS certificate, for the Kyverno policy. */}}
{{- define "lattice-xds.xdsCaConfigMap" -}}
{{- printf "%s-xds-ca" (include "lattice-xds.fullname" .) -}}
{{- end -}}

{{/* Envoy's log lines as JSON objects, as the signer and controller write theirs (the same
format as src/inject.rs gives the webhook's sidecars). */}}
{{- define "lattice-xds.envoyJsonLogFormat" -}}
{"timestamp":"%Y-%m-%dT%T.%eZ","level":"%l","target":"envoy.%n","fields":{"message":"%j"}}
{{- end -}}

{{/* What the signer signs for, as the environment of the container that signs: the signer
sidecar, or Envoy with the signer module. Each line is a list item of a container's env. */}}
{{- define "lattice-xds.signerScope" -}}
{{- with .Values.region }}
            - {name: AWS_REGION, value: {{ . | quote }}}
{{- end }}
{{- if eq .Values.signing.algorithm "sigv4a" }}
            - {name: LATTICE_XDS_SIGNING_ALGORITHM, value: sigv4a}
            - {name: LATTICE_XDS_REGION_SET, value: {{ .Values.signing.regionSet | quote }}}
{{- end }}
{{- end }}
