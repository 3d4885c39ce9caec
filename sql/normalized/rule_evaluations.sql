-- One row per Debugger rule evaluation, debugging and profiling rules alike.
with records as (
    select * from latest_records
),

debugger as (
    select
        job.TrainingJobArn as training_job_arn,
        'debugger' as rule_kind,
        unnest(range(len(job.DebugRuleEvaluationStatuses))) as rule_index,
        unnest(job.DebugRuleEvaluationStatuses) as evaluation
    from records
),

profiler as (
    select
        job.TrainingJobArn as training_job_arn,
        'profiler' as rule_kind,
        unnest(range(len(job.ProfilerRuleEvaluationStatuses))) as rule_index,
        unnest(job.ProfilerRuleEvaluationStatuses) as evaluation
    from records
),

evaluations as (
    select * from debugger
    union all
    select * from profiler
)

select
    training_job_arn,
    rule_kind,
    rule_index,
    evaluation.RuleConfigurationName as rule_configuration_name,
    evaluation.RuleEvaluationJobArn as rule_evaluation_job_arn,
    evaluation.RuleEvaluationStatus as rule_evaluation_status,
    evaluation.StatusDetails as status_details,
    evaluation.LastModifiedTime as last_modified_time
from evaluations
