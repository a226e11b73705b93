<#
.SYNOPSIS
  runner-dispatch runner entrypoint (Windows): starts one ephemeral GitHub Actions
  runner from the runner container contract (design.md) and exits when its job ends.

.DESCRIPTION
  JIT mode:          RUNNER_JITCONFIG
  Registration mode: RUNNER_URL, RUNNER_TOKEN, RUNNER_NAME, RUNNER_LABELS,
                     RUNNER_GROUP, RUNNER_EPHEMERAL=1 (legacy, weaker)

  Secrets never reach job steps: they are copied into script variables and every
  token variable (RUNNER_JITCONFIG, RUNNER_TOKEN, any *_TOKEN, *_JITCONFIG or
  *_SECRET, plus the names in RUNNER_SECRET_VARS) is removed from the process
  environment before the runner starts. The runner receives the secret through an
  ACTIONS_RUNNER_INPUT_* variable that exists only while its process starts (the
  runner reads and clears it), so it is never on a command line.

  Optional: RUNNER_HOME (default C:\actions-runner), RUNNER_WORKDIR (default _work),
  RUNNER_SECRETS_VIA_ARGS=1 to pass --jitconfig/--token on the command line instead.
  Nothing here prints a secret; do not add Set-PSDebug tracing.
#>
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest

function Write-Log([string]$Message) {
    [Console]::Error.WriteLine(('{0} runner-entrypoint: {1}' -f (Get-Date).ToUniversalTime().ToString('yyyy-MM-ddTHH:mm:ssZ'), $Message))
}

$runnerHome = if ($env:RUNNER_HOME) { $env:RUNNER_HOME } else { 'C:\actions-runner' }
Set-Location -LiteralPath $runnerHome

# ---- take the secrets out of the environment ---------------------------------
$jitConfig = [Environment]::GetEnvironmentVariable('RUNNER_JITCONFIG', 'Process')
$regToken = [Environment]::GetEnvironmentVariable('RUNNER_TOKEN', 'Process')
$secretsViaArgs = ($env:RUNNER_SECRETS_VIA_ARGS -eq '1')

$secretNames = New-Object System.Collections.Generic.List[string]
foreach ($n in 'RUNNER_JITCONFIG', 'RUNNER_TOKEN', 'ACTIONS_RUNNER_INPUT_JITCONFIG', 'ACTIONS_RUNNER_INPUT_TOKEN') { $secretNames.Add($n) }
foreach ($item in Get-ChildItem Env:) {
    if ($item.Name -match '_(TOKEN|JITCONFIG|SECRET)$') { $secretNames.Add($item.Name) }
}
if ($env:RUNNER_SECRET_VARS) {
    foreach ($n in ($env:RUNNER_SECRET_VARS -split '\s+')) { if ($n) { $secretNames.Add($n) } }
}
$secretNames.Add('RUNNER_SECRET_VARS')
foreach ($n in $secretNames) {
    [Environment]::SetEnvironmentVariable($n, $null, 'Process')
}

# When the container stops, Windows sends the console control event to every
# process attached to the console, the runner included, so it can stop cleanly;
# make sure the runner does not outlive this script either way.
$global:RunnerDispatchChild = $null
$null = Register-EngineEvent -SourceIdentifier PowerShell.Exiting -Action {
    $child = $global:RunnerDispatchChild
    if ($child -and -not $child.HasExited) { Stop-Process -Id $child.Id -ErrorAction SilentlyContinue }
}

# Start a runner script with one secret in ACTIONS_RUNNER_INPUT_<name> for that
# process only, then wait for it and return its exit code.
function Invoke-Runner([string]$Script, [string[]]$Arguments, [string]$InputName, [string]$InputValue) {
    if ($InputName) { [Environment]::SetEnvironmentVariable("ACTIONS_RUNNER_INPUT_$InputName", $InputValue, 'Process') }
    try {
        $startArgs = @{ FilePath = $Script; NoNewWindow = $true; PassThru = $true }
        if ($Arguments -and $Arguments.Count -gt 0) {
            # Start-Process takes one command-line string: quote what needs quoting.
            $startArgs.ArgumentList = ($Arguments | ForEach-Object {
                    if ($_ -match '[\s"]') { '"' + ($_ -replace '"', '\"') + '"' } else { $_ }
                }) -join ' '
        }
        $proc = Start-Process @startArgs
        $null = $proc.Handle # keeps ExitCode available after exit
    }
    finally {
        if ($InputName) { [Environment]::SetEnvironmentVariable("ACTIONS_RUNNER_INPUT_$InputName", $null, 'Process') }
    }
    $global:RunnerDispatchChild = $proc
    $proc.WaitForExit()
    return $proc.ExitCode
}

# ---- JIT mode -----------------------------------------------------------------
if ($jitConfig) {
    Write-Log 'starting an ephemeral runner from its just-in-time configuration'
    if ($secretsViaArgs) {
        $code = Invoke-Runner -Script '.\run.cmd' -Arguments @('--jitconfig', $jitConfig)
    }
    else {
        $code = Invoke-Runner -Script '.\run.cmd' -Arguments @() -InputName 'JITCONFIG' -InputValue $jitConfig
    }
    $jitConfig = $null
    Write-Log "runner exited with status $code"
    exit $code
}

# ---- registration mode (legacy) ---------------------------------------------
if (-not $regToken) {
    Write-Log 'neither RUNNER_JITCONFIG nor RUNNER_TOKEN is set: nothing to run'
    exit 64
}
if (-not $env:RUNNER_URL) { throw 'RUNNER_URL is required with RUNNER_TOKEN' }
$runnerName = if ($env:RUNNER_NAME) { $env:RUNNER_NAME } else { $env:COMPUTERNAME }
$labels = if ($env:RUNNER_LABELS) { $env:RUNNER_LABELS } else { 'self-hosted' }
$workDir = if ($env:RUNNER_WORKDIR) { $env:RUNNER_WORKDIR } else { '_work' }
$configArgs = @(
    '--unattended',
    '--url', $env:RUNNER_URL,
    '--name', $runnerName,
    '--labels', $labels,
    '--no-default-labels',
    '--work', $workDir,
    '--disableupdate',
    '--replace',
    '--ephemeral'
)
if ($env:RUNNER_GROUP) { $configArgs += @('--runnergroup', $env:RUNNER_GROUP) }
if ($env:RUNNER_EPHEMERAL -and $env:RUNNER_EPHEMERAL -ne '1') {
    Write-Log "RUNNER_EPHEMERAL=$($env:RUNNER_EPHEMERAL): runner-dispatch expects ephemeral runners; registering as ephemeral anyway"
}

Write-Log "registering $runnerName at $($env:RUNNER_URL) with labels $labels"
if ($secretsViaArgs) {
    $code = Invoke-Runner -Script '.\config.cmd' -Arguments ($configArgs + @('--token', $regToken))
}
else {
    $code = Invoke-Runner -Script '.\config.cmd' -Arguments $configArgs -InputName 'TOKEN' -InputValue $regToken
}
$regToken = $null
if ($code -ne 0) {
    Write-Log "config.cmd failed with status $code"
    exit $code
}

Write-Log 'starting the runner'
$code = Invoke-Runner -Script '.\run.cmd' -Arguments @()
Write-Log "runner exited with status $code"
exit $code
