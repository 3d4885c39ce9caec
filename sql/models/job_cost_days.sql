-- One row per job per UTC day it ran: its costs spread in proportion to running time that day.
-- Compute, storage, hours and spot savings follow training start..end (or the last fetch while running);
-- warm-pool cost follows the retention after the end. A job that never ran sits on its creation day.
with jobs as (
    select * from jobs
),

job_costs as (
    select * from job_costs
),

runs as (
    -- When the billed run ended. A finished job without TrainingEndTime ends after its training (or
    -- billable) seconds, else at its last modification; only a running job runs up to its last fetch.
    select
        jobs.training_job_arn,
        (jobs.creation_time at time zone 'UTC') as created_at,
        (jobs.training_start_time at time zone 'UTC') as start_at,
        (case
            when jobs.training_start_time is null then null
            when jobs.training_end_time is not null then jobs.training_end_time
            when not job_costs.is_final then jobs.fetched_at
            else coalesce(
                jobs.training_start_time
                + to_seconds(cast(coalesce(jobs.training_time_in_seconds, jobs.billable_time_in_seconds) as bigint)),
                jobs.last_modified_time
            )
        end at time zone 'UTC') as end_at,
        jobs.resource_retained_billable_time_in_seconds
    from jobs
    join job_costs using (training_job_arn)
),

intervals as (
    select training_job_arn, 'run' as part, start_at, end_at, created_at
    from runs
    union all
    select
        training_job_arn,
        'warm_pool' as part,
        end_at as start_at,
        end_at + to_seconds(cast(resource_retained_billable_time_in_seconds as bigint)) as end_at,
        created_at
    from runs
    where end_at is not null and coalesce(resource_retained_billable_time_in_seconds, 0) > 0
),

spread as (
    -- Intervals with a length: one row per UTC day they touch, with that day's share of the interval.
    select
        training_job_arn,
        part,
        cast(day as date) as day,
        (epoch_ms(least(end_at, day + interval 1 day)) - epoch_ms(greatest(start_at, day)))
            / (epoch_ms(end_at) - epoch_ms(start_at)) as share
    from (
        select *, unnest(generate_series(date_trunc('day', start_at), end_at, interval 1 day)) as day
        from intervals
        where end_at > start_at
    ) as job_days
    where day < end_at
    union all
    -- Zero-length or never-started intervals: all on one day.
    select training_job_arn, part, cast(coalesce(start_at, created_at) as date) as day, 1.0 as share
    from intervals
    where end_at is null or end_at <= start_at
),

shares as (
    select
        training_job_arn,
        day,
        sum(share) filter (where part = 'run') as run_share,
        sum(share) filter (where part = 'warm_pool') as warm_pool_share
    from spread
    group by training_job_arn, day
),

final as (
    select
        shares.training_job_arn,
        shares.day,
        coalesce(shares.run_share, 0) * job_costs.instance_hours as instance_hours,
        coalesce(shares.run_share, 0) * job_costs.accelerator_hours as accelerator_hours,
        coalesce(shares.run_share, 0) * job_costs.compute_cost_usd as compute_cost_usd,
        coalesce(shares.warm_pool_share, 0) * job_costs.warm_pool_cost_usd as warm_pool_cost_usd,
        coalesce(shares.run_share, 0) * job_costs.storage_cost_usd as storage_cost_usd,
        coalesce(shares.run_share, 0) * (job_costs.compute_cost_usd + job_costs.storage_cost_usd)
            + coalesce(shares.warm_pool_share, 0) * job_costs.warm_pool_cost_usd as total_cost_usd,
        coalesce(shares.run_share, 0) * job_costs.spot_savings_usd as spot_savings_usd
    from shares
    join job_costs using (training_job_arn)
)

select * from final
