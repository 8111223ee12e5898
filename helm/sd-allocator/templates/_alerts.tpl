{{/*
The alert groups, the one source of the PrometheusRule and of Managed Prometheus' Rules
(alerts.yaml). Each alert has a section of docs/monitoring.md named after it.

Metrics of the allocator are selected by the release's namespace, the label every scrape of
the chart's pods gets. Store-wide ones (every replica reads the same number from Redis) are
aggregated with max, per-replica ones with min or sum. Agones' metrics come from Agones' own
pods, so they are selected by the Fleet's name only; where they are not scraped, `or
vector(0)` counts the Fleet's Ready GameServers as 0.
*/}}
{{- define "sda.alertGroups" -}}
{{- $alerts := .Values.monitoring.alerts -}}
{{- $ns := printf "namespace=%q" .Release.Namespace -}}
{{- $fleet := printf "fleet_name=%q" .Values.fleet.name -}}
{{- $job := $alerts.metricsAbsent.job | default (include "sda.name" .) -}}
{{- $common := dict "alerts" $alerts -}}
- name: sd-allocator
  rules:
    - alert: SdAllocatorAllocationsFailing
      expr: |-
        (
          sum(rate(sda_allocations_total{ {{- $ns }},result=~"failed|error"}[15m]))
            / sum(rate(sda_allocations_total{ {{- $ns }}}[15m]))
        ) > {{ $alerts.allocationsFailing.ratio }}
        and
        sum(increase(sda_allocations_total{ {{- $ns }},result=~"failed|error"}[15m])) >= {{ $alerts.allocationsFailing.minFailures }}
      for: {{ $alerts.allocationsFailing.for }}
      {{- include "sda.alertMeta" (merge (dict "rule" $alerts.allocationsFailing "name" "SdAllocatorAllocationsFailing"
          "summary" "Allocations of WebUIs are failing"
          "description" "{{ $value | humanizePercentage }} of the allocations in the last 15 minutes failed: people get an error page instead of a WebUI. The allocator's log says why, in its lines 'allocation for ... failed'.") $common) | nindent 6 }}
    - alert: SdAllocatorNoReadyWebUI
      expr: |-
        (sum(agones_gameservers_count{ {{- $fleet }},type="Ready"}) or vector(0)) == 0
        and on ()
        max(sda_queue_length{ {{- $ns }}}) > 0
      for: {{ $alerts.noReadyWebUI.for }}
      {{- include "sda.alertMeta" (merge (dict "rule" $alerts.noReadyWebUI "name" "SdAllocatorNoReadyWebUI"
          "summary" "People are waiting and no WebUI is Ready"
          "description" (printf "People have been queued for a GPU while Fleet %s had no Ready GameServer. Either the Fleet is at maxReplicas (all WebUIs in use) or new WebUIs do not start (no GPU node, image, model loading)." .Values.fleet.name)) $common) | nindent 6 }}
    - alert: SdAllocatorCruiserNotRunning
      expr: |-
        time() - max(sda_cruise_last_pass_timestamp_seconds{ {{- $ns }}}) > {{ $alerts.cruiserNotRunning.seconds }}
      for: {{ $alerts.cruiserNotRunning.for }}
      {{- include "sda.alertMeta" (merge (dict "rule" $alerts.cruiserNotRunning "name" "SdAllocatorCruiserNotRunning"
          "summary" "The cruiser has not run"
          "description" "No cruiser pass has been recorded for {{ $value | humanizeDuration }}: idle WebUIs are not given back, and GPUs are paid for while nobody uses them.") $common) | nindent 6 }}
    - alert: SdAllocatorCruiserFailing
      expr: |-
        max(sda_cruise_last_pass_failures{ {{- $ns }}}) > 0
      for: {{ $alerts.cruiserFailing.for }}
      {{- include "sda.alertMeta" (merge (dict "rule" $alerts.cruiserFailing "name" "SdAllocatorCruiserFailing"
          "summary" "Cruiser passes cannot release WebUIs"
          "description" "The last cruiser pass could not release {{ $value }} WebUIs, and passes have been failing like this for a while: they stay allocated until a pass succeeds.") $common) | nindent 6 }}
    - alert: SdAllocatorStoreUnreachable
      expr: |-
        min(sda_store_up{ {{- $ns }}}) == 0
      for: {{ $alerts.storeUnreachable.for }}
      {{- include "sda.alertMeta" (merge (dict "rule" $alerts.storeUnreachable "name" "SdAllocatorStoreUnreachable"
          "summary" "An allocator cannot reach Redis"
          "description" "At least one allocator replica's checks of Redis have been failing: people it has not seen recently get an error page, and nobody new gets a WebUI from it.") $common) | nindent 6 }}
    - alert: SdAllocatorMetricsAbsent
      expr: |-
        absent(up{ {{- $ns }},job={{ $job | quote }}} == 1)
      for: {{ $alerts.metricsAbsent.for }}
      {{- include "sda.alertMeta" (merge (dict "rule" $alerts.metricsAbsent "name" "SdAllocatorMetricsAbsent"
          "summary" "No allocator's metrics are scraped"
          "description" (printf "No allocator replica in namespace %s has been scraped successfully (job %s): either no allocator runs, or the scrapes fail, and every other alert of sd-allocator is blind." .Release.Namespace $job)) $common) | nindent 6 }}
{{- end -}}

{{/* An alert's labels and annotations; the description ends with where its runbook is. */}}
{{- define "sda.alertMeta" -}}
{{- $anchor := lower .name -}}
{{- $base := .alerts.runbookBaseUrl -}}
labels:
  severity: {{ .rule.severity | quote }}
  {{- with .alerts.labels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
annotations:
  summary: {{ .summary | quote }}
  description: {{ printf "%s Runbook: docs/monitoring.md#%s" .description $anchor | quote }}
  {{- if $base }}
  runbook_url: {{ printf "%s#%s" $base $anchor | quote }}
  {{- end }}
{{- end -}}
