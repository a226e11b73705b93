// runner-dispatch: one ephemeral GitHub Actions runner per queued job, on Azure.
//
// Deploys, at resource-group scope:
//   - a Function App on the Flex Consumption plan running the runner-dispatch
//     binary as a custom handler, with a user-assigned identity;
//   - its Storage account, keyless: host storage, the deployment container app-package,
//     the queues runner-requests, runner-requests-failed, runner-cleanup,
//     runner-cleanup-failed, runner-requests-poison and runner-cleanup-poison, and the
//     container runner-dispatch-state for the idle runners' demand log, whose append
//     blobs under demand/ the lifecycle rule runner-dispatch-demand-log deletes after
//     two days;
//   - a Key Vault (RBAC mode) for the webhook secret, the GitHub App key and,
//     optionally, the pools file, surfaced as Key Vault references;
//   - Log Analytics + Application Insights;
//   - an Azure Batch account with Linux and Windows container pools and an
//     optional Linux pool that runs the runner on the VM (Docker available);
//   - identities for image pulls and for jobs, an optional VNet with a subnet
//     delegated to Azure Container Instances and a NAT gateway (or your own NAT gateway,
//     or a route table to your firewall) as the runners' way out, and least-privilege
//     role assignments.
// Container groups themselves are created at run time by the app, in
// `containerGroupResourceGroup` (default: this resource group), and, with
// `aciPlacements`, in more regions, resource groups and subscriptions (each gets the
// container-group role and, optionally, a resource group and a regional VNet with its
// NAT gateway).
//
// See infra/README.md for every parameter and docs/deploy.md for the full procedure.

targetScope = 'resourceGroup'

// ---------------------------------------------------------------- naming

@description('Short prefix for every resource name: 2-10 lowercase letters, digits or hyphens, starting with a letter.')
@minLength(2)
@maxLength(10)
param namePrefix string = 'rdisp'

@description('Azure region for every resource (must offer Flex Consumption).')
param location string = resourceGroup().location

@description('Tags applied to every resource.')
param tags object = {
  application: 'runner-dispatch'
}

// ---------------------------------------------------------------- GitHub

@description('GitHub App id (GITHUB_APP_ID). Leave empty when you use GITHUB_APP_CLIENT_ID or a PAT.')
param githubAppId string = ''

@description('GitHub App client id (GITHUB_APP_CLIENT_ID), an alternative to the app id.')
param githubAppClientId string = ''

@description('GitHub App installation id (GITHUB_APP_INSTALLATION_ID); empty: taken from each webhook.')
param githubAppInstallationId string = ''

@description('GitHub API URL (GITHUB_API_URL); change for GitHub Enterprise Server.')
param githubApiUrl string = 'https://api.github.com'

@description('Which webhook delivers workflow_job events (GITHUB_HOOK_SCOPE): the GitHub App\'s own hook, an organization hook or a repository hook.')
@allowed([
  'app'
  'org'
  'repo'
])
param githubHookScope string = 'app'

@description('Hook id for org/repo hooks (GITHUB_HOOK_ID), used to redeliver missed deliveries.')
param githubHookId string = ''

@description('Organisation that owns an org hook (GITHUB_HOOK_OWNER); needed with githubHookScope = org.')
param githubHookOwner string = ''

@description('owner/repo that owns a repository hook (GITHUB_HOOK_REPOSITORY); needed with githubHookScope = repo.')
param githubHookRepository string = ''

@secure()
@description('Webhook secret to store in Key Vault now. Empty: set the secret github-webhook-secret after the deployment.')
param githubWebhookSecret string = ''

@secure()
@description('GitHub App private key (PEM) to store in Key Vault now. Empty: set github-app-private-key after the deployment.')
param githubAppPrivateKey string = ''

// ---------------------------------------------------------------- pools file

@description('Read the pools file from the Key Vault secret runners-toml (RUNNER_DISPATCH_CONFIG_TOML): pool changes without a redeploy. Only turn on once the secret exists.')
param poolsFileFromKeyVault bool = false

@secure()
@description('Pools file text to store as runners-toml now (optional).')
param runnersToml string = ''

@description('Path of the pools file inside the package (RUNNER_DISPATCH_CONFIG), used when poolsFileFromKeyVault is false.')
param poolsFilePath string = 'runners.toml'

@description('RUST_LOG filter for the handler.')
param rustLog string = 'info'

@description('Extra app settings merged last (for example GITHUB_TOKEN as a Key Vault reference, or RUST_LOG overrides).')
param extraAppSettings object = {}

// ---------------------------------------------------------------- Function App

@description('Instance memory of the Flex Consumption app.')
@allowed([
  512
  2048
  4096
])
param functionInstanceMemoryMB int = 2048

@description('Most instances the app scales out to. Flex Consumption\'s lowest maximum is 1 (it was 40 until 2025), its highest 1000.')
@minValue(1)
@maxValue(1000)
param functionMaximumInstanceCount int = 40

@description('Always-ready instances for the HTTP (webhook) group. 1 avoids cold starts near GitHub\'s 10 s limit; costs a fixed baseline.')
@minValue(0)
@maxValue(10)
param functionHttpAlwaysReady int = 0

@description('Existing subnet (delegated to Microsoft.App/environments) for the app\'s outbound VNet integration; empty for none.')
param functionSubnetId string = ''

// ---------------------------------------------------------------- images and identities

@description('Resource id of an existing Azure Container Registry holding the runner images; empty if the images are public. The image-pull identity gets AcrPull on it.')
param containerRegistryId string = ''

@description('Linux runner image (built from runner-image/Dockerfile), prefetched on the Linux Batch pool.')
param linuxRunnerImage string = 'myacr.azurecr.io/actions-runner:latest'

@description('Windows runner image (runner-image/Dockerfile.windows, ltsc2022), prefetched on the Windows Batch pool.')
param windowsRunnerImage string = 'myacr.azurecr.io/actions-runner:ltsc2022'

@description('Create a user-assigned identity that jobs may use (pool key `identity`). The app gets Managed Identity Operator on it; grant it Azure roles yourself.')
param createRunnerIdentity bool = true

@description('Object id of the user, group or pipeline that deploys: gets Key Vault Secrets Officer to set the secrets. Empty to skip.')
param deployerPrincipalId string = ''

@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param deployerPrincipalType string = 'User'

// ---------------------------------------------------------------- ACI

@description('Existing resource group where the app creates container groups (AZURE_RESOURCE_GROUP). Default: this one.')
param containerGroupResourceGroup string = resourceGroup().name

// Placements: more regions, resource groups and subscriptions for ACI pools (a pool's
// `placements` in runners.toml; docs/deploy.md, "ACI placements"). Each item:
//   location             region of the container groups (required)
//   resourceGroupName    resource group for them (required)
//   subscriptionId       default: this deployment's subscription (same Entra tenant)
//   createResourceGroup  default false: the resource group must exist
//   subnetId             existing subnet in `location` and in the placement's
//                        subscription (ACI refuses any other), delegated to
//                        Microsoft.ContainerInstance/containerGroups; default none
//   grantSubnetJoin      default true: with subnetId, give the app's identity the
//                        subnet-join role on it
//   vnetAddressPrefix    without subnetId: create <namePrefix>-vnet-<location> with
//                        this address space and a delegated subnet aci-runners
//   aciSubnetPrefix      that subnet's prefix; default the whole address space
//   vnetName             default <namePrefix>-vnet-<location>
//   natGatewayId         with vnetAddressPrefix: an existing NAT gateway for the
//                        subnet; default: one is created (with its public IP)
//   routeTableId         with vnetAddressPrefix: a route table to your firewall
//                        instead of a NAT gateway
// The app's identity gets the container-group role on every placement's resource
// group. Outputs aciPlacementEntries / aciPlacementsToml give the runners.toml values.
@description('ACI placements (objects: location, resourceGroupName, subscriptionId?, createResourceGroup?, subnetId?, grantSubnetJoin?, vnetAddressPrefix?, aciSubnetPrefix?, vnetName?, natGatewayId?, routeTableId?). Empty: container groups only in containerGroupResourceGroup, as before.')
param aciPlacements array = []

// ---------------------------------------------------------------- network

@description('Create a VNet with a subnet delegated to Microsoft.ContainerInstance/containerGroups (for ACI pools) and a subnet for Batch nodes.')
param enableRunnerVnet bool = false

param vnetAddressPrefix string = '10.40.0.0/16'
param aciSubnetPrefix string = '10.40.0.0/22'
param batchSubnetPrefix string = '10.40.4.0/22'

@description('With enableRunnerVnet: an existing NAT gateway (same region) for the runner subnets; empty: one is created with its public IP, unless runnerVnetRouteTableId is set.')
param runnerVnetNatGatewayId string = ''

@description('With enableRunnerVnet: an existing route table whose default route leads to your firewall, instead of a NAT gateway.')
param runnerVnetRouteTableId string = ''

@description('The VM lane (pools with backend = "vm", docs/vm-lane.md): a VNet with a NAT-gateway subnet for runner VMs, the app identity\'s VM role, and a gallery with an Image Builder template for the image. Off by default.')
param enableVmLane bool = false
param vmLaneVnetAddressPrefix string = '10.41.0.0/16'
param vmLaneSubnetPrefix string = '10.41.0.0/22'

@description('Place the Batch pools in the VNet\'s batch-nodes subnet (needs enableRunnerVnet).')
param batchPoolsInVnet bool = false

// ---------------------------------------------------------------- Batch

@description('Use Spot (low-priority) nodes in every Batch pool. Cheaper; an eviction fails the running job.')
param batchUseSpotNodes bool = false

param deployLinuxBatchPool bool = true
param linuxBatchPoolId string = 'linux'
param linuxBatchVmSize string = 'Standard_D2s_v5'
@minValue(0)
param linuxBatchMaxNodes int = 10
@minValue(1)
param linuxBatchRunnersPerNode int = 1

param deployWindowsBatchPool bool = true
param windowsBatchPoolId string = 'windows'
param windowsBatchVmSize string = 'Standard_D4s_v5'
@minValue(0)
param windowsBatchMaxNodes int = 5
param windowsBatchImageSku string = '2022-datacenter-core-with-containers-smalldisk'

@description('Deploy the Linux pool that runs the runner on the VM, with Docker, for `run_on_host = true` pools.')
param deployHostBatchPool bool = false
param hostBatchPoolId string = 'linux-host'
param hostBatchVmSize string = 'Standard_D4s_v5'
@minValue(0)
param hostBatchMaxNodes int = 5

@description('GitHub Actions runner version the host pool start task installs: latest (each new node gets the newest release; GitHub stops giving jobs to runners more than 30 days behind) or a pinned 2.x.y.')
param runnerVersion string = 'latest'

@description('sha256 of actions-runner-linux-x64-<runnerVersion>.tar.gz when pinned; empty: the release\'s own published digest.')
param runnerLinuxSha256 string = ''

// ================================================================ names

var suffix = take(uniqueString(subscription().id, resourceGroup().id, namePrefix), 6)
var compactPrefix = toLower(replace(namePrefix, '-', ''))
var names = {
  appIdentity: '${namePrefix}-app-id'
  pullIdentity: '${namePrefix}-acrpull-id'
  runnerIdentity: createRunnerIdentity ? '${namePrefix}-runner-id' : ''
  workspace: '${namePrefix}-logs-${suffix}'
  appInsights: '${namePrefix}-appi-${suffix}'
  storage: take('${compactPrefix}st${suffix}', 24)
  keyVault: take('${namePrefix}-kv-${suffix}', 24)
  batch: take('${compactPrefix}batch${suffix}', 24)
  vnet: '${namePrefix}-vnet'
  plan: '${namePrefix}-plan-${suffix}'
  app: '${namePrefix}-func-${suffix}'
  deploymentContainer: 'app-package'
}

var registryParts = split(containerRegistryId, '/')
var hasRegistry = !empty(containerRegistryId)

// The design's default has no trailing slash; environment() has one.
var resourceManagerUrl = endsWith(environment().resourceManager, '/') ? take(environment().resourceManager, length(environment().resourceManager) - 1) : environment().resourceManager

// ================================================================ resources

module identities 'modules/identities.bicep' = {
  name: 'identities'
  params: {
    location: location
    tags: tags
    appIdentityName: names.appIdentity
    pullIdentityName: names.pullIdentity
    runnerIdentityName: names.runnerIdentity
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    location: location
    tags: tags
    workspaceName: names.workspace
    appInsightsName: names.appInsights
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  params: {
    location: location
    tags: tags
    storageAccountName: names.storage
    deploymentContainerName: names.deploymentContainer
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  params: {
    location: location
    tags: tags
    keyVaultName: names.keyVault
    githubWebhookSecret: githubWebhookSecret
    githubAppPrivateKey: githubAppPrivateKey
    runnersToml: runnersToml
  }
}

module network 'modules/network.bicep' = if (enableRunnerVnet) {
  name: 'network'
  params: {
    location: location
    tags: tags
    vnetName: names.vnet
    addressPrefix: vnetAddressPrefix
    aciSubnetPrefix: aciSubnetPrefix
    batchSubnetPrefix: batchSubnetPrefix
    natGatewayId: runnerVnetNatGatewayId
    routeTableId: runnerVnetRouteTableId
  }
}

module acrPull 'modules/acr-pull.bicep' = if (hasRegistry) {
  name: 'acr-pull'
  scope: resourceGroup(hasRegistry ? registryParts[2] : subscription().subscriptionId, hasRegistry ? registryParts[4] : resourceGroup().name)
  params: {
    registryName: hasRegistry ? last(registryParts) : 'unused'
    pullPrincipalId: identities.outputs.pullIdentityPrincipalId
  }
}

module batch 'modules/batch.bicep' = {
  name: 'batch'
  params: {
    location: location
    tags: tags
    batchAccountName: names.batch
    pullIdentityId: hasRegistry ? identities.outputs.pullIdentityId : ''
    registryServer: hasRegistry ? acrPull.outputs.loginServer : ''
    subnetId: (enableRunnerVnet && batchPoolsInVnet) ? network.outputs.batchSubnetId : ''
    useSpotNodes: batchUseSpotNodes
    deployLinuxPool: deployLinuxBatchPool
    linuxPoolId: linuxBatchPoolId
    linuxVmSize: linuxBatchVmSize
    linuxMaxNodes: linuxBatchMaxNodes
    linuxTaskSlotsPerNode: linuxBatchRunnersPerNode
    linuxRunnerImage: linuxRunnerImage
    deployWindowsPool: deployWindowsBatchPool
    windowsPoolId: windowsBatchPoolId
    windowsVmSize: windowsBatchVmSize
    windowsMaxNodes: windowsBatchMaxNodes
    windowsRunnerImage: windowsRunnerImage
    windowsImageReference: {
      publisher: 'MicrosoftWindowsServer'
      offer: 'WindowsServer'
      sku: windowsBatchImageSku
      version: 'latest'
    }
    deployHostPool: deployHostBatchPool
    hostPoolId: hostBatchPoolId
    hostVmSize: hostBatchVmSize
    hostMaxNodes: hostBatchMaxNodes
    runnerVersion: runnerVersion
    runnerLinuxSha256: runnerLinuxSha256
  }
}

module rbac 'modules/rbac.bicep' = {
  name: 'rbac'
  params: {
    appPrincipalId: identities.outputs.appIdentityPrincipalId
    storageAccountName: storage.outputs.storageAccountName
    appInsightsName: monitoring.outputs.appInsightsName
    keyVaultName: keyVault.outputs.keyVaultName
    batchAccountName: batch.outputs.batchAccountName
    pullIdentityName: identities.outputs.pullIdentityName
    runnerIdentityName: identities.outputs.runnerIdentityName
    vnetName: enableRunnerVnet ? names.vnet : ''
    deployerPrincipalId: deployerPrincipalId
    deployerPrincipalType: deployerPrincipalType
  }
  dependsOn: [
    network
  ]
}

module aciRbac 'modules/aci-rbac.bicep' = {
  name: 'aci-rbac'
  scope: resourceGroup(containerGroupResourceGroup)
  params: {
    appPrincipalId: identities.outputs.appIdentityPrincipalId
  }
}

// The VM lane (optional): network, role and image in this resource group.
module vmLane 'modules/vm-lane.bicep' = if (enableVmLane) {
  name: 'vm-lane'
  params: {
    location: location
    tags: tags
    appPrincipalId: identities.outputs.appIdentityPrincipalId
    vnetName: '${namePrefix}-vm-vnet'
    vnetAddressPrefix: vmLaneVnetAddressPrefix
    subnetPrefix: vmLaneSubnetPrefix
  }
}

module vmImage 'modules/vm-image.bicep' = if (enableVmLane) {
  name: 'vm-image'
  params: {
    location: location
    tags: tags
    galleryName: '${compactPrefix}gallery${suffix}'
    templateName: '${namePrefix}-vm-image'
    builderIdentityName: '${namePrefix}-imagebuilder-id'
    runnerVersion: runnerVersion
  }
}

// Every placement with its defaults filled in (later keys win in union()).
var placements = [for p in aciPlacements: union({
  subscriptionId: subscription().subscriptionId
  createResourceGroup: false
  subnetId: ''
  grantSubnetJoin: true
  vnetName: '${namePrefix}-vnet-${p.location}'
  vnetAddressPrefix: ''
  aciSubnetPrefix: ''
  natGatewayId: ''
  routeTableId: ''
}, p)]

// One at a time: two placements may share a resource group (and so its custom roles).
// After the main roles, which a placement in the main resource group may share too.
@batchSize(1)
module aciPlacement 'modules/aci-placement.bicep' = [for p in placements: {
  name: take('${namePrefix}-placement-${uniqueString(resourceGroup().id, p.subscriptionId, p.resourceGroupName, p.location)}', 64)
  scope: subscription(p.subscriptionId)
  params: {
    namePrefix: namePrefix
    location: p.location
    resourceGroupName: p.resourceGroupName
    createResourceGroup: p.createResourceGroup
    tags: tags
    appPrincipalId: identities.outputs.appIdentityPrincipalId
    // The main deployment already grants it on containerGroupResourceGroup (aciRbac).
    grantContainerGroupRole: !(p.subscriptionId == subscription().subscriptionId && toLower(p.resourceGroupName) == toLower(containerGroupResourceGroup))
    subnetId: p.subnetId
    grantSubnetJoin: p.grantSubnetJoin
    vnetName: p.vnetName
    vnetAddressPrefix: p.vnetAddressPrefix
    aciSubnetPrefix: p.aciSubnetPrefix
    natGatewayId: p.natGatewayId
    routeTableId: p.routeTableId
  }
  dependsOn: [
    rbac
    aciRbac
  ]
}]

var vaultUri = keyVault.outputs.vaultUri

// Versionless Key Vault references: the app follows new secret versions (see docs/deploy.md).
var runnerDispatchSettings = union(
  {
    GITHUB_WEBHOOK_SECRET: '@Microsoft.KeyVault(SecretUri=${vaultUri}secrets/github-webhook-secret/)'
    GITHUB_APP_PRIVATE_KEY: '@Microsoft.KeyVault(SecretUri=${vaultUri}secrets/github-app-private-key/)'
    GITHUB_API_URL: githubApiUrl
    GITHUB_HOOK_SCOPE: githubHookScope
    AZURE_SUBSCRIPTION_ID: subscription().subscriptionId
    AZURE_TENANT_ID: subscription().tenantId
    AZURE_RESOURCE_GROUP: containerGroupResourceGroup
    AZURE_LOCATION: location
    AZURE_RESOURCE_MANAGER_URL: resourceManagerUrl
    AZURE_BATCH_ACCOUNT_URL: batch.outputs.batchAccountUrl
    AZURE_BATCH_ACCOUNT_NAME: batch.outputs.batchAccountName
    AZURE_CLIENT_ID: identities.outputs.appIdentityClientId
    RUNNER_DISPATCH_CONFIG: poolsFilePath
    RUST_LOG: rustLog
  },
  empty(githubAppId) ? {} : { GITHUB_APP_ID: githubAppId },
  empty(githubAppClientId) ? {} : { GITHUB_APP_CLIENT_ID: githubAppClientId },
  empty(githubAppInstallationId) ? {} : { GITHUB_APP_INSTALLATION_ID: githubAppInstallationId },
  empty(githubHookId) ? {} : { GITHUB_HOOK_ID: githubHookId },
  empty(githubHookOwner) ? {} : { GITHUB_HOOK_OWNER: githubHookOwner },
  empty(githubHookRepository) ? {} : { GITHUB_HOOK_REPOSITORY: githubHookRepository },
  poolsFileFromKeyVault ? { RUNNER_DISPATCH_CONFIG_TOML: '@Microsoft.KeyVault(SecretUri=${vaultUri}secrets/runners-toml/)' } : {},
  extraAppSettings
)

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  params: {
    location: location
    tags: tags
    planName: names.plan
    appName: names.app
    appIdentityId: identities.outputs.appIdentityId
    appIdentityClientId: identities.outputs.appIdentityClientId
    storageAccountName: storage.outputs.storageAccountName
    deploymentContainerUrl: storage.outputs.deploymentContainerUrl
    appInsightsConnectionString: monitoring.outputs.connectionString
    instanceMemoryMB: functionInstanceMemoryMB
    maximumInstanceCount: functionMaximumInstanceCount
    httpAlwaysReady: functionHttpAlwaysReady
    virtualNetworkSubnetId: functionSubnetId
    appSettings: runnerDispatchSettings
  }
  // The identity must hold its storage roles before the app fetches its package.
  dependsOn: [
    rbac
  ]
}

// ================================================================ outputs

@description('Point the GitHub App (or org/repo hook) webhook here, content type application/json.')
output webhookUrl string = 'https://${functionApp.outputs.defaultHostName}/api/github-webhook'
output functionAppName string = functionApp.outputs.appName
output keyVaultName string = keyVault.outputs.keyVaultName
output storageAccountName string = storage.outputs.storageAccountName
output batchAccountName string = batch.outputs.batchAccountName
output batchAccountUrl string = batch.outputs.batchAccountUrl
output batchPoolIds array = batch.outputs.poolIds
output appIdentityClientId string = identities.outputs.appIdentityClientId
@description('Use as `image_pull_identity` in runners.toml for ACI pools.')
output imagePullIdentityId string = identities.outputs.pullIdentityId
@description('Use as `identity` in runners.toml for pools whose jobs need Azure access.')
output runnerIdentityId string = identities.outputs.runnerIdentityId
@description('Use as `subnet_id` in runners.toml for ACI pools in the VNet.')
output aciSubnetId string = enableRunnerVnet ? network.outputs.aciSubnetId : ''
output containerGroupResourceGroup string = containerGroupResourceGroup
@description('The aciPlacements, in order, as runners.toml keys (location, subscription_id, resource_group, subnet_id): the items of an ACI pool\'s `placements`.')
output aciPlacementEntries array = [for (p, i) in placements: aciPlacement[i].outputs.entry]
@description('The same as TOML inline tables, one per placement: join them with commas inside `placements = [ ... ]` (docs/deploy.md shows a jq one-liner).')
output aciPlacementsToml array = [for (p, i) in placements: aciPlacement[i].outputs.toml]
@description('VM lane: `subnet_id` of a vm pool.')
output vmSubnetId string = enableVmLane ? vmLane.outputs.subnetId : ''
@description('VM lane: `image` of a vm pool (the gallery image; build a version first with az image builder run).')
output vmImageId string = enableVmLane ? vmImage.outputs.imageId : ''
output vmImageTemplateName string = enableVmLane ? vmImage.outputs.templateName : ''
