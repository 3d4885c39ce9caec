-- One row per instance type and status: how long jobs take to start, train and finish, and the share
-- of wall time not spent training.
with job_durations as (
    select * from job_durations
),

final as (
    select
        coalesce(instance_type, '(heterogeneous or serverless)') as instance_type,
        training_job_status,
        count(*) as jobs,
        quantile_cont(startup_seconds, 0.5) as p50_startup_seconds,
        quantile_cont(startup_seconds, 0.95) as p95_startup_seconds,
        quantile_cont(training_seconds, 0.5) as p50_training_seconds,
        quantile_cont(training_seconds, 0.95) as p95_training_seconds,
        quantile_cont(wall_seconds, 0.5) as p50_wall_seconds,
        quantile_cont(wall_seconds, 0.95) as p95_wall_seconds,
        1 - sum(training_seconds) / nullif(sum(wall_seconds), 0) as share_not_training
    from job_durations
    group by all
)

select * from final
