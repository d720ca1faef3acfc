extension GenerationRequest {
    /// The scheduler config this request runs with: the folder's, with the request's overrides applied (diffusers'
    /// `Cls.from_config(pipe.scheduler.config, **overrides)`).
    public func schedulerConfig(from folder: SchedulerConfig) -> SchedulerConfig {
        var config = folder
        if let spacing = timestepSpacing { config.timestepSpacing = spacing.rawValue }
        return config
    }

    /// The scheduler kind this request runs with on a pipeline whose folder names `folderDefault`.
    public func schedulerKind(folderDefault: SchedulerKind) -> SchedulerKind { scheduler ?? folderDefault }
}

extension StableDiffusionPipeline {
    /// The request's scheduler (or the folder's), built from the folder's config with the request's overrides, its
    /// timesteps set for `request.steps`.
    func makeScheduler(for request: GenerationRequest) throws -> any Scheduler {
        try request.schedulerKind(folderDefault: defaultScheduler)
            .make(config: request.schedulerConfig(from: schedulerConfig), steps: request.steps)
    }
}
