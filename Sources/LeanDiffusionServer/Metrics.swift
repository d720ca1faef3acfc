import LeanDiffusion

/// `/metrics` in Prometheus' text exposition format (version 0.0.4): queue depth, jobs by state, step time,
/// memory. Written by hand: a dozen series do not need a metrics library.
enum Metrics {
    static func text(_ c: JobQueue.Counts, http: HTTPCounts.Snapshot, model: ServedModel, workers: Int) -> String {
        var out = ""
        func metric(_ name: String, _ type: String, _ help: String, _ samples: [(labels: String, value: String)]) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
            for s in samples { out += "\(name)\(s.labels.isEmpty ? "" : "{\(s.labels)}") \(s.value)\n" }
        }
        metric("lean_diffusion_queue_depth", "gauge", "Jobs waiting to run.", [("", "\(c.waiting)")])
        metric("lean_diffusion_jobs_running", "gauge", "Jobs running now.", [("", "\(c.running)")])
        metric("lean_diffusion_oldest_waiting_seconds", "gauge", "Age of the oldest waiting job.",
               [("", format(c.oldestWaitingSeconds))])
        metric("lean_diffusion_jobs_total", "counter", "Jobs by final state since start.",
               [JobState.done, .failed, .cancelled].map { ("state=\"\($0.rawValue)\"", "\(c.finishedByState[$0] ?? 0)") })
        metric("lean_diffusion_jobs_submitted_total", "counter", "Jobs accepted since start.", [("", "\(c.submitted)")])
        metric("lean_diffusion_jobs_rejected_total", "counter", "Jobs refused (queue full or draining).",
               [("", "\(c.rejected)")])
        metric("lean_diffusion_step_seconds", "summary", "Seconds per denoising step.", [])
        out += "lean_diffusion_step_seconds_sum \(format(c.stepSeconds))\nlean_diffusion_step_seconds_count \(c.stepsTimed)\n"
        metric("lean_diffusion_http_requests_total", "counter", "HTTP responses by status class.",
               http.byClass.sorted { $0.key < $1.key }.map { ("code=\"\($0.key)\"", "\($0.value)") })
        metric("lean_diffusion_peak_rss_bytes", "gauge", "Peak resident set size of the process.",
               [("", "\(ProcessMemory.peakRSSBytes())")])
        metric("lean_diffusion_rss_bytes", "gauge", "Resident set size now.", [("", "\(ProcessMemory.currentRSSBytes())")])
        metric("lean_diffusion_workers", "gauge", "Generation slots (--concurrency).", [("", "\(workers)")])
        metric("lean_diffusion_model_info", "gauge", "The loaded model.",
               [("name=\"\(escape(model.name))\",hash=\"\(model.hash ?? "")\"", "1")])
        return out
    }

    static func format(_ v: Double) -> String { v.isFinite ? "\(v)" : "0" }

    static func escape(_ s: String) -> String {
        s.replacing("\\", with: "\\\\").replacing("\"", with: "\\\"").replacing("\n", with: "\\n")
    }
}
