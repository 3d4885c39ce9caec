-- One row per UTC day, account, region, instance type, status and value of the first cost-allocation tag.
with job_cost_days_tagged as (
    select * from job_cost_days_tagged
),

final as (
    select
        day,
        account_id,
        region,
        instance_type,
        training_job_status,
        allocation_tag_key,
        allocation_tag_value,
        count(*) as jobs,
        count(*) filter (where not is_priced) as unpriced_jobs,
        coalesce(sum(instance_hours), 0) as instance_hours,
        sum(accelerator_hours) as accelerator_hours,
        sum(compute_cost_usd) as compute_cost_usd,
        sum(warm_pool_cost_usd) as warm_pool_cost_usd,
        sum(storage_cost_usd) as storage_cost_usd,
        sum(total_cost_usd) as total_cost_usd,
        sum(spot_savings_usd) as spot_savings_usd
    from job_cost_days_tagged
    where allocation_tag_position = 0
    group by all
)

select * from final
