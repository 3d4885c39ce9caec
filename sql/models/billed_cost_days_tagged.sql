-- One row per UTC day, job (or none) and cost-allocation tag key of the bill: what it charged that day for
-- SageMaker training, labelled like job_cost_days_tagged so that cost_daily and cost_monthly set the bill
-- beside the estimates. Lines of jobs the warehouse does not hold, and lines on no job, keep the labels the
-- bill gives them (account, region, instance type, the user_<key> resource tag).
with billing_line_items as (
    select * from billing_line_items
),

job_cost_days_tagged as (
    select * from job_cost_days_tagged
),

allocation_tags as (
    select * from allocation_tags
),

billed_jobs as (
    select distinct lower(training_job_arn) as job_key
    from billing_line_items
    where training_job_arn is not null
),

labels as (
    -- What each known job the bill names is grouped by: the same on every day it ran.
    select distinct
        lower(job_cost_days_tagged.training_job_arn) as job_key,
        job_cost_days_tagged.account_id,
        job_cost_days_tagged.region,
        job_cost_days_tagged.instance_type,
        job_cost_days_tagged.training_job_status,
        job_cost_days_tagged.allocation_tag_key,
        job_cost_days_tagged.allocation_tag_value
    from job_cost_days_tagged
    semi join billed_jobs on lower(job_cost_days_tagged.training_job_arn) = billed_jobs.job_key
),

line_days as (
    select
        training_job_arn,
        lower(training_job_arn) as job_key,
        account_id,
        region,
        instance_type,
        resource_tags,
        cast(usage_start at time zone 'UTC' as date) as day,
        effective_cost_usd,
        unblended_cost_usd,
        case
            when line_item_type in ('Usage', 'SavingsPlanCoveredUsage', 'DiscountedUsage')
                then coalesce(public_on_demand_cost_usd, 0)
            else 0
        end as list_cost_usd
    from billing_line_items
),

final as (
    select
        line_days.day,
        cast(date_trunc('month', line_days.day) as date) as month,
        line_days.training_job_arn,
        coalesce(labels.account_id, line_days.account_id) as account_id,
        coalesce(labels.region, line_days.region, '(unknown)') as region,
        coalesce(labels.instance_type, line_days.instance_type, '(other)') as instance_type,
        coalesce(
            labels.training_job_status,
            case when line_days.training_job_arn is null then '(no job)' else '(not in warehouse)' end
        ) as training_job_status,
        allocation_tags.tag_key as allocation_tag_key,
        allocation_tags.tag_position as allocation_tag_position,
        coalesce(
            labels.allocation_tag_value,
            json_extract_string(line_days.resource_tags, '$."user_' || allocation_tags.tag_key || '"'),
            '(untagged)'
        ) as allocation_tag_value,
        sum(line_days.effective_cost_usd) as effective_cost_usd,
        sum(line_days.unblended_cost_usd) as unblended_cost_usd,
        sum(line_days.list_cost_usd) as list_cost_usd
    from line_days
    cross join allocation_tags
    left join labels
        on line_days.job_key = labels.job_key and allocation_tags.tag_key = labels.allocation_tag_key
    group by all
)

select * from final
