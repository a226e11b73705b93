// Azure Batch account (pool allocation mode BatchService, Entra ID data-plane
// auth) with up to three autoscaling pools:
//   - linux:   Linux container pool (runner image prefetched), one runner per task
//   - windows: Windows container pool (runner image prefetched)
//   - host:    optional Linux pool without containers, for runners that need
//              Docker (`run_on_host = true`): its start task installs Docker and
//              the GitHub Actions runner into /opt/actions-runner.
// Every pool scales on pending tasks from zero to its max and back to zero.
// Autoscale evaluates every 5 minutes at most, so a pool at zero takes roughly
// 5-15 minutes to start a runner (design.md).

param location string
param tags object

@description('Batch account name: 3-24 lowercase letters and digits.')
@minLength(3)
@maxLength(24)
param batchAccountName string

@description('Allow Shared Key auth on the data plane besides Entra ID (keep false; runner-dispatch uses Entra ID).')
param allowSharedKey bool = false

@description('Resource id of the image-pull identity, assigned to every pool to pull from ACR. Empty: public images only.')
param pullIdentityId string = ''

@description('Registry login server (for example myacr.azurecr.io). Empty: no registry credentials on the pools.')
param registryServer string = ''

@description('Subnet for pool nodes; empty for no virtual network.')
param subnetId string = ''

@description('Use Spot (low-priority) nodes instead of dedicated ones. Spot nodes can be evicted mid-job; GitHub then fails the job.')
param useSpotNodes bool = false

// Linux container pool
param deployLinuxPool bool = true
param linuxPoolId string = 'linux'
param linuxVmSize string = 'Standard_D2s_v5'
@minValue(0)
param linuxMaxNodes int = 10
@minValue(1)
@description('Runners per Linux node (each task is one runner; give each enough vCPU and memory).')
param linuxTaskSlotsPerNode int = 1
@description('Runner image prefetched on Linux container nodes.')
param linuxRunnerImage string
param linuxImageReference object = {
  publisher: 'microsoft-dsvm'
  offer: 'ubuntu-hpc'
  sku: '2404'
  version: 'latest'
}
param linuxNodeAgentSkuId string = 'batch.node.ubuntu 24.04'

// Windows container pool
param deployWindowsPool bool = true
param windowsPoolId string = 'windows'
param windowsVmSize string = 'Standard_D4s_v5'
@minValue(0)
param windowsMaxNodes int = 5
@description('Runner image prefetched on Windows container nodes (must match the host OS: ltsc2022).')
param windowsRunnerImage string
param windowsImageReference object = {
  publisher: 'MicrosoftWindowsServer'
  offer: 'WindowsServer'
  sku: '2022-datacenter-core-with-containers-smalldisk'
  version: 'latest'
}
param windowsNodeAgentSkuId string = 'batch.node.windows amd64'

// Linux pool that runs the runner on the VM (Docker available to jobs)
param deployHostPool bool = false
param hostPoolId string = 'linux-host'
param hostVmSize string = 'Standard_D4s_v5'
@minValue(0)
param hostMaxNodes int = 5
param hostImageReference object = {
  publisher: 'canonical'
  offer: 'ubuntu-24_04-lts'
  sku: 'server'
  version: 'latest'
}
param hostNodeAgentSkuId string = 'batch.node.ubuntu 24.04'
@description('GitHub Actions runner version installed by the host pool start task.')
param runnerVersion string
@description('sha256 of actions-runner-linux-x64-<runnerVersion>.tar.gz; empty: the release\'s own published digest.')
param runnerLinuxSha256 string

// Scale between 0 and maxNodes on pending (active + running) tasks. The 5-minute
// peak keeps a node through short gaps between jobs; TaskCompletion never kills a
// running runner when scaling in. Idle runners kept ready (idle_runners) are running
// tasks, so they count here: the pool keeps a slot for each, and reconcile's top-up
// tasks (active until a node is free) grow the pool like queued jobs do.
func autoScaleFormula(maxNodes int, slotsPerNode int, spot bool) string =>
  '$samples = $PendingTasks.GetSamplePercent(TimeInterval_Minute * 5);\n$last = $samples < 1 ? 0 : max($PendingTasks.GetSample(1));\n$peak = $samples < 50 ? $last : max($PendingTasks.GetSample(TimeInterval_Minute * 5));\n$pending = max($last, $peak);\n$nodes = min(${maxNodes}, ceil($pending / ${slotsPerNode}));\n$TargetDedicatedNodes = ${spot ? '0' : '$nodes'};\n$TargetLowPriorityNodes = ${spot ? '$nodes' : '0'};\n$NodeDeallocationOption = taskcompletion;'

var poolIdentity = empty(pullIdentityId) ? null : {
  type: 'UserAssigned'
  userAssignedIdentities: {
    '${pullIdentityId}': {}
  }
}

var containerRegistries = (empty(registryServer) || empty(pullIdentityId)) ? [] : [
  {
    registryServer: registryServer
    identityReference: {
      resourceId: pullIdentityId
    }
  }
]

var networkConfiguration = empty(subnetId) ? null : {
  subnetId: subnetId
}

resource batch 'Microsoft.Batch/batchAccounts@2025-06-01' = {
  // checkov:skip=CKV_AZURE_76: Batch encrypts account data at rest with Microsoft-managed keys; customer-managed keys need a key, an identity and a rotation process this template leaves to the user
  name: batchAccountName
  location: location
  tags: tags
  properties: {
    poolAllocationMode: 'BatchService'
    allowedAuthenticationModes: allowSharedKey ? [
      'AAD'
      'SharedKey'
    ] : [
      'AAD'
    ]
    publicNetworkAccess: 'Enabled'
  }
}

resource linuxPool 'Microsoft.Batch/batchAccounts/pools@2025-06-01' = if (deployLinuxPool) {
  parent: batch
  name: linuxPoolId
  identity: poolIdentity
  properties: {
    displayName: 'runner-dispatch Linux container runners'
    vmSize: linuxVmSize
    taskSlotsPerNode: linuxTaskSlotsPerNode
    taskSchedulingPolicy: {
      nodeFillType: 'Pack'
    }
    interNodeCommunication: 'Disabled'
    networkConfiguration: networkConfiguration
    deploymentConfiguration: {
      virtualMachineConfiguration: {
        imageReference: linuxImageReference
        nodeAgentSkuId: linuxNodeAgentSkuId
        containerConfiguration: {
          type: 'DockerCompatible'
          containerImageNames: [
            linuxRunnerImage
          ]
          containerRegistries: containerRegistries
        }
      }
    }
    scaleSettings: {
      autoScale: {
        formula: autoScaleFormula(linuxMaxNodes, linuxTaskSlotsPerNode, useSpotNodes)
        evaluationInterval: 'PT5M'
      }
    }
    metadata: [
      {
        name: 'runner-dispatch-pool'
        value: linuxPoolId
      }
    ]
  }
}

resource windowsPool 'Microsoft.Batch/batchAccounts/pools@2025-06-01' = if (deployWindowsPool) {
  parent: batch
  name: windowsPoolId
  identity: poolIdentity
  properties: {
    displayName: 'runner-dispatch Windows container runners'
    vmSize: windowsVmSize
    taskSlotsPerNode: 1
    interNodeCommunication: 'Disabled'
    networkConfiguration: networkConfiguration
    deploymentConfiguration: {
      virtualMachineConfiguration: {
        imageReference: windowsImageReference
        nodeAgentSkuId: windowsNodeAgentSkuId
        windowsConfiguration: {
          enableAutomaticUpdates: false
        }
        containerConfiguration: {
          type: 'DockerCompatible'
          containerImageNames: [
            windowsRunnerImage
          ]
          containerRegistries: containerRegistries
        }
      }
    }
    scaleSettings: {
      autoScale: {
        formula: autoScaleFormula(windowsMaxNodes, 1, useSpotNodes)
        evaluationInterval: 'PT5M'
      }
    }
    metadata: [
      {
        name: 'runner-dispatch-pool'
        value: windowsPoolId
      }
    ]
  }
}

var hostStartScriptB64 = loadFileAsBase64('../scripts/batch-host-start.sh')
var entrypointB64 = loadFileAsBase64('../../runner-image/entrypoint.sh')
var fetchRunnerB64 = loadFileAsBase64('../../runner-image/fetch-runner.sh')

resource hostPool 'Microsoft.Batch/batchAccounts/pools@2025-06-01' = if (deployHostPool) {
  parent: batch
  name: hostPoolId
  identity: poolIdentity
  properties: {
    displayName: 'runner-dispatch Linux runners on the VM (Docker available)'
    vmSize: hostVmSize
    // One runner per VM: jobs share the node's Docker daemon and root.
    taskSlotsPerNode: 1
    interNodeCommunication: 'Disabled'
    networkConfiguration: networkConfiguration
    deploymentConfiguration: {
      virtualMachineConfiguration: {
        imageReference: hostImageReference
        nodeAgentSkuId: hostNodeAgentSkuId
      }
    }
    startTask: {
      commandLine: '/bin/bash -c \'printf "%s" "$START_SCRIPT_B64" | base64 -d > "$AZ_BATCH_TASK_WORKING_DIR/start.sh" && exec /bin/bash "$AZ_BATCH_TASK_WORKING_DIR/start.sh"\''
      environmentSettings: [
        {
          name: 'START_SCRIPT_B64'
          value: hostStartScriptB64
        }
        {
          name: 'RUNNER_ENTRYPOINT_B64'
          value: entrypointB64
        }
        {
          name: 'RUNNER_FETCH_B64'
          value: fetchRunnerB64
        }
        {
          name: 'RUNNER_VERSION'
          value: runnerVersion
        }
        {
          name: 'RUNNER_SHA256'
          value: runnerLinuxSha256
        }
      ]
      userIdentity: {
        autoUser: {
          scope: 'Pool'
          elevationLevel: 'Admin'
        }
      }
      maxTaskRetryCount: 2
      waitForSuccess: true
    }
    scaleSettings: {
      autoScale: {
        formula: autoScaleFormula(hostMaxNodes, 1, useSpotNodes)
        evaluationInterval: 'PT5M'
      }
    }
    metadata: [
      {
        name: 'runner-dispatch-pool'
        value: hostPoolId
      }
    ]
  }
}

output batchAccountId string = batch.id
output batchAccountName string = batch.name
output batchAccountUrl string = 'https://${batch.properties.accountEndpoint}'
output poolIds array = concat(
  deployLinuxPool ? [ linuxPoolId ] : [],
  deployWindowsPool ? [ windowsPoolId ] : [],
  deployHostPool ? [ hostPoolId ] : []
)
