{{/* Names and labels shared by every object. */}}

{{- define "sda.name" -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}

{{- define "sda.labels" -}}
app.kubernetes.io/name: sd-allocator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component: allocator, webui, cruiser or test. */}}
{{- define "sda.selector" -}}
app.kubernetes.io/name: sd-allocator
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "sda.image" -}}
{{- printf "%s/%s:%s" (.root.Values.image.registry | trimSuffix "/") .name .root.Values.image.tag -}}
{{- end -}}

{{- define "sda.claimName" -}}
{{- if eq .Values.storage.mode "existingClaim" -}}
{{- .Values.storage.existingClaim -}}
{{- else -}}
{{- printf "%s-share" (include "sda.name" .) -}}
{{- end -}}
{{- end -}}

{{/* The hardening every container of ours gets. */}}
{{- define "sda.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
{{- end -}}

{{- define "sda.podSecurity" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Settings the allocator and the in-cluster cruiser share. */}}
{{- define "sda.commonEnv" -}}
- name: SDA_BACKEND
  value: agones
- name: SDA_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: SDA_FLEET
  value: {{ .Values.fleet.name | quote }}
- name: SDA_IDLE_TIMEOUT
  value: {{ .Values.allocator.idleTimeoutSeconds | quote }}
- name: SDA_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.secretName }}
      key: {{ .Values.redis.urlKey }}
{{- if .Values.redis.tls }}
- name: SDA_REDIS_CA_CERT
  value: /etc/sd-allocator/redis/ca.crt
{{- end }}
- name: SDA_LOG_FORMAT
  value: {{ .Values.allocator.logFormat | quote }}
- name: SDA_LOG_LEVEL
  value: {{ .Values.allocator.logLevel | quote }}
- name: SDA_DATA_DIR
  value: /tmp/sda
{{- range $name, $value := .Values.allocator.extraEnv }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- end -}}

{{- define "sda.commonVolumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if .Values.redis.tls }}
- name: redis-ca
  mountPath: /etc/sd-allocator/redis
  readOnly: true
{{- end }}
{{- end -}}

{{- define "sda.commonVolumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: 256Mi
{{- if .Values.redis.tls }}
- name: redis-ca
  secret:
    secretName: {{ .Values.redis.secretName }}
    items:
      - key: {{ .Values.redis.caKey }}
        path: ca.crt
{{- end }}
{{- end -}}

{{/* Rules between values that the JSON schema cannot express; Agones would refuse these. */}}
{{- define "sda.validate" -}}
{{- $fleet := .Values.fleet -}}
{{- if and (gt (int $fleet.minReplicas) 0) (lt (int $fleet.minReplicas) (int $fleet.buffer)) -}}
{{- fail (printf "fleet.minReplicas (%v) must be 0 or at least fleet.buffer (%v)" $fleet.minReplicas $fleet.buffer) -}}
{{- end -}}
{{- if lt (int $fleet.maxReplicas) (max (int $fleet.buffer) (int $fleet.minReplicas) | int) -}}
{{- fail (printf "fleet.maxReplicas (%v) must be at least fleet.buffer and fleet.minReplicas" $fleet.maxReplicas) -}}
{{- end -}}
{{- if $fleet.schedule.enabled -}}
{{- $names := list -}}
{{- range $fleet.schedule.entries -}}
{{- if eq .name "default" -}}
{{- fail "fleet.schedule.entries: \"default\" names the plain buffer's entry; choose another name" -}}
{{- end -}}
{{- if has .name $names -}}
{{- fail (printf "fleet.schedule.entries: the name %q is used twice; Agones needs unique ids" .name) -}}
{{- end -}}
{{- $names = append $names .name -}}
{{- if gt (int .buffer) (int $fleet.maxReplicas) -}}
{{- fail (printf "fleet.schedule.entries %q: buffer (%v) must be at most fleet.maxReplicas (%v)" .name .buffer $fleet.maxReplicas) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $storage := .Values.storage -}}
{{- $subPaths := list $storage.modelsSubPath $storage.usersSubPath $storage.deletionsSubPath -}}
{{- if ne (len (uniq $subPaths)) 3 -}}
{{- fail "storage.modelsSubPath, usersSubPath and deletionsSubPath must be three different folders" -}}
{{- end -}}
{{- end -}}
