// Example parameters for infra/main.bicep. Copy, edit, and deploy with
//   az deployment group create -g <rg> --template-file infra/main.bicep --parameters infra/main.bicepparam
// or scripts/deploy.sh -g <rg> -p <your copy>. Secrets do not belong here: set
// them in Key Vault after the deployment (docs/deploy.md, step 4).
using './main.bicep'

param namePrefix = 'rdisp'
param tags = {
  application: 'runner-dispatch'
  environment: 'prod'
}

// GitHub App (docs/deploy.md, step 1)
param githubAppId = '123456'
// Which hook reconcile reads deliveries of (GITHUB_HOOK_SCOPE): 'app' (the App's own
// hook) needs nothing more. For an organisation hook set 'org', the hook id and the
// organisation; for a repository hook set 'repo', the hook id and 'owner/repo'.
param githubHookScope = 'app'
param githubHookId = ''
param githubHookOwner = ''
param githubHookRepository = ''

// Your object id (az ad signed-in-user show --query id -o tsv): lets you set the secrets.
param deployerPrincipalId = ''

// Runner images in your registry (runner-image/README.md)
param containerRegistryId = '/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-shared/providers/Microsoft.ContainerRegistry/registries/myacr'
param linuxRunnerImage = 'myacr.azurecr.io/actions-runner:latest'
param windowsRunnerImage = 'myacr.azurecr.io/actions-runner:ltsc2022'

// Function App: one always-ready instance keeps the webhook answer fast.
param functionHttpAlwaysReady = 1

// Container groups go to this (existing) resource group.
// param containerGroupResourceGroup = 'rg-runners'

// More ACI placements (regions, resource groups, subscriptions) for pools with
// `placements` in runners.toml: quota and capacity per region. docs/deploy.md, "ACI placements".
// param aciPlacements = [
//   { location: 'westeurope', resourceGroupName: 'rg-runners' }
//   { location: 'northeurope', resourceGroupName: 'rg-runners-ne', createResourceGroup: true, vnetAddressPrefix: '10.41.0.0/22' }
//   { location: 'swedencentral', subscriptionId: '11111111-1111-1111-1111-111111111111', resourceGroupName: 'rg-runners-se', createResourceGroup: true }
// ]

// Private networking for ACI runners (subnet delegated to container groups). The runner
// subnets go out through a NAT gateway created with a static public IP; or set
// runnerVnetNatGatewayId (yours) or runnerVnetRouteTableId (a route to your firewall).
param enableRunnerVnet = false
param batchPoolsInVnet = false

// Batch pools
param batchUseSpotNodes = false
param deployLinuxBatchPool = true
param linuxBatchVmSize = 'Standard_D2s_v5'
param linuxBatchMaxNodes = 10
param deployWindowsBatchPool = true
param windowsBatchVmSize = 'Standard_D4s_v5'
param windowsBatchMaxNodes = 4
param deployHostBatchPool = false
param hostBatchMaxNodes = 4
// The host pool installs the latest runner release on each new node (or pin 2.x.y + its sha256).
param runnerVersion = 'latest'
param runnerLinuxSha256 = ''

// Pools file from Key Vault (pool changes without a redeploy); turn on after
// setting the runners-toml secret.
param poolsFileFromKeyVault = false
