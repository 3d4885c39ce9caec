-- One row per training job: its on-demand cost, by the billing rules in the README ("How costs are computed").
-- Reads the run's storage_rates (ML storage per region; '*' for the others) and final_statuses besides the
-- warehouse tables.
with jobs as (
    select * from jobs
),

instance_groups as (
    select * from instance_groups
),

instance_prices as (
    select * from instance_prices
),

instance_types as (
    select * from instance_types
),

storage_rates as (
    select * from storage_rates
),

final_statuses as (
    select * from final_statuses
),

job_durations as (
    select * from job_durations
),

-- Every kind of instance a job ran: one row for a plain job, one per group for a heterogeneous cluster.
fleet as (
    select training_job_arn, instance_type, instance_count
    from jobs
    where not is_heterogeneous_cluster and instance_type is not null
    union all
    select training_job_arn, instance_type, instance_count
    from instance_groups
),

priced_fleet as (
    select
        fleet.training_job_arn,
        fleet.instance_type,
        fleet.instance_count,
        instance_prices.usd_per_hour as usd_per_instance_hour,
        -- What the instance is does not depend on its price: usage is counted for unpriced jobs too.
        instance_types.accelerator_count,
        -- Unknown storage (a type not in instance_types, or not confirmed) bills the volume: an estimate
        -- errs towards cost, not towards a silent zero.
        coalesce(instance_types.has_local_nvme, false) as has_local_nvme,
        instance_prices.source,
        instance_prices.verified
    from fleet
    join jobs using (training_job_arn)
    left join instance_prices
        on jobs.region = instance_prices.region and fleet.instance_type = instance_prices.instance_type
    left join instance_types on fleet.instance_type = instance_types.instance_type
),

clusters as (
    select
        training_job_arn,
        sum(instance_count) as instance_count,
        bool_and(usd_per_instance_hour is not null and instance_count is not null) as all_priced,
        sum(instance_count * usd_per_instance_hour) as usd_per_hour,
        sum(instance_count * accelerator_count) as accelerators,
        count(*) filter (where accelerator_count is null) = 0 as accelerators_known,
        coalesce(sum(instance_count) filter (where not has_local_nvme), 0) as volume_instances,
        string_agg(distinct source, '; ' order by source) as price_source,
        bool_and(verified) as prices_verified,
        string_agg(distinct instance_type, ', ' order by instance_type)
            filter (where usd_per_instance_hour is null) as unpriced_instance_types
    from priced_fleet
    group by training_job_arn
),

finality as (
    -- Final: a status after which the job no longer changes (an unknown new status is not final).
    select
        jobs.*,
        jobs.training_job_status in (select final_statuses.status from final_statuses) as is_final
    from jobs
),

durations as (
    select
        finality.*,
        -- A running job has no billable time yet: estimate it from training start to its last fetch.
        case
            when not finality.is_final and finality.training_start_time is not null
                then (epoch_ms(finality.fetched_at) - epoch_ms(finality.training_start_time)) / 1000.0
        end as running_seconds,
        -- A running managed-spot job is billed nothing while Interrupted; its spot discount shows only when
        -- it ends, so until then it is estimated at the full rate for the time it was not interrupted.
        case
            when not finality.is_final and finality.enable_managed_spot_training
                then coalesce(job_durations.interrupted_seconds, 0)
            else 0
        end as interrupted_so_far
    from finality
    left join job_durations using (training_job_arn)
),

seconds as (
    select
        *,
        serverless_job_type is not null or billable_token_count is not null as is_serverless,
        -- Never started (no capacity, a bad image, ...): nothing was billed, with or without an instance.
        training_start_time is null and coalesce(billable_time_in_seconds, 0) = 0
        and serverless_job_type is null and billable_token_count is null as never_ran,
        -- A finished job that trained was billed; AWS not saying for how long makes its cost unknown, not $0.
        is_final and training_start_time is not null and billable_time_in_seconds is null
        and serverless_job_type is null and billable_token_count is null as billable_time_missing,
        coalesce(training_time_in_seconds, running_seconds, 0) as wall_training_seconds,
        coalesce(resource_retained_billable_time_in_seconds, 0) as warm_pool_seconds
    from durations
),

billed as (
    select
        *,
        case
            when not billable_time_missing
                then coalesce(billable_time_in_seconds, greatest(running_seconds - interrupted_so_far, 0), 0)
        end as billable_seconds
    from seconds
),

costed as (
    select
        billed.training_job_arn,
        billed.account_id,
        billed.region,
        billed.training_job_status,
        case when billed.is_heterogeneous_cluster then 'heterogeneous' else billed.instance_type end
            as instance_type,
        clusters.instance_count,
        case when clusters.all_priced then clusters.usd_per_hour end as usd_per_hour,
        billed.billable_seconds,
        billed.billable_seconds * coalesce(clusters.instance_count, 0) / 3600.0 as instance_hours,
        case when clusters.accelerators_known
            then billed.billable_seconds * clusters.accelerators / 3600.0 end as accelerator_hours,
        not billed.is_serverless and not billed.billable_time_missing
        and (billed.never_ran or clusters.all_priced is true) as is_priced,
        billed.is_serverless,
        billed.never_ran,
        billed.billable_time_missing,
        billed.is_final,
        billed.training_plan_arn is not null as on_training_plan,
        billed.enable_managed_spot_training,
        billed.billable_token_count,
        billed.wall_training_seconds,
        billed.warm_pool_seconds,
        billed.volume_size_in_gb,
        clusters.volume_instances,
        clusters.price_source,
        clusters.prices_verified,
        clusters.unpriced_instance_types,
        coalesce(regional_storage.usd_per_gb_month, any_region_storage.usd_per_gb_month)
            as storage_usd_per_gb_month,
        coalesce(regional_storage.verified, any_region_storage.verified) as storage_rate_verified
    from billed
    left join clusters using (training_job_arn)
    left join storage_rates as regional_storage on billed.region = regional_storage.region
    left join storage_rates as any_region_storage on any_region_storage.region = '*'
),

final as (
    select
        training_job_arn,
        account_id,
        region,
        training_job_status,
        instance_type,
        instance_count,
        usd_per_hour,
        billable_seconds,
        instance_hours,
        accelerator_hours,
        case
            when not is_priced then null
            when never_ran or on_training_plan then 0.0  -- nothing billed, or capacity bought up front
            else billable_seconds * usd_per_hour / 3600.0
        end as compute_cost_usd,
        case
            when not is_priced then null
            when never_ran then 0.0
            else warm_pool_seconds * usd_per_hour / 3600.0
        end as warm_pool_cost_usd,
        case
            when not is_priced then null
            when never_ran then 0.0
            else coalesce(volume_size_in_gb, 0) * volume_instances * storage_usd_per_gb_month
                * (wall_training_seconds + warm_pool_seconds) / (730.0 * 3600.0)
        end as storage_cost_usd,
        compute_cost_usd + warm_pool_cost_usd + storage_cost_usd as total_cost_usd,
        case
            when not is_priced then null
            when enable_managed_spot_training and not never_ran
                then greatest(wall_training_seconds - billable_seconds, 0) * usd_per_hour / 3600.0
            else 0.0
        end as spot_savings_usd,
        is_priced,
        is_final,
        case
            when billable_token_count is not null then 'serverless (billed per token; no public price)'
            when is_serverless then 'serverless (no instances)'
            when billable_time_missing then 'no billable time reported'
            when never_ran and instance_type is null then 'never started (no charge)'
            when not is_priced then 'unpriced'
            when on_training_plan then 'training plan (prepaid compute)'
            when enable_managed_spot_training then 'managed spot'
            else 'on-demand'
        end as cost_basis,
        price_source,
        -- Every rate the cost rests on was checked: the instance prices, and the storage rate if billed.
        case when is_priced
            then coalesce(prices_verified, true)
            and (storage_rate_verified or coalesce(volume_size_in_gb, 0) * coalesce(volume_instances, 0) = 0)
        end as price_verified,
        unpriced_instance_types,
        storage_usd_per_gb_month
    from costed
)

select * from final
