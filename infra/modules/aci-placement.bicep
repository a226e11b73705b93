// One ACI placement (main.bicep, aciPlacements): a region, a subscription and a
// resource group where the app may create container groups, tried in the order of
// the pool's `placements` list in runners.toml. Deployed at the scope of the
// placement's subscription (which may differ from the main deployment's), it:
//   - creates the resource group when asked (createResourceGroup);
//   - gives the app's identity the container-group custom role (aci-rbac.bicep) on it;
//   - creates a regional VNet with a subnet delegated to ACI and a NAT gateway
//     (aci-network.bicep) when vnetAddressPrefix is set, or takes an existing subnetId,
//     which must be in this same subscription: Azure Container Instances joins a container
//     group only to a subnet of its own subscription (Microsoft's ACI virtual network
//     page), so one in another subscription is refused with fail();
//   - lets the app's identity join container groups to that subnet (subnet-join.bicep).
// The image-pull identity and its AcrPull grant are the main deployment's; nothing
// changes for them here.

targetScope = 'subscription'

@description('Prefix of the nested deployment names (main.bicep namePrefix).')
param namePrefix string

@description('Region of the container groups (and of the resource group and VNet when created).')
param location string

@description('Resource group that receives the container groups.')
param resourceGroupName string

@description('Create the resource group (in location) instead of using an existing one.')
param createResourceGroup bool = false

param tags object = {}

@description('Principal (object) id of the Function App user-assigned identity.')
param appPrincipalId string

@description('Assign the container-group role on the resource group. False when main.bicep already does (the placement is containerGroupResourceGroup).')
param grantContainerGroupRole bool = true

@description('Existing subnet, delegated to Microsoft.ContainerInstance/containerGroups, in location and in this subscription, with a way out to the internet (a NAT gateway); empty: create one (vnetAddressPrefix) or none.')
param subnetId string = ''

@description('With subnetId: also give the app\'s identity the subnet-join role on it (in the subnet\'s resource group).')
param grantSubnetJoin bool = true

@description('Name of the VNet created when vnetAddressPrefix is set.')
param vnetName string = ''

@description('Address space of a VNet to create in this resource group; empty: none (ignored when subnetId is set).')
param vnetAddressPrefix string = ''

@description('Delegated subnet prefix inside vnetAddressPrefix; empty: the whole address space.')
param aciSubnetPrefix string = ''

@description('With vnetAddressPrefix: an existing NAT gateway (same region) for the subnet; empty: one is created, unless routeTableId is set.')
param natGatewayId string = ''

@description('With vnetAddressPrefix: an existing route table whose default route leads to your firewall, instead of a NAT gateway.')
param routeTableId string = ''

var createVnet = empty(subnetId) && !empty(vnetAddressPrefix)
var existingSubnet = !empty(subnetId)
var hasSubnet = createVnet || existingSubnet
// /subscriptions/{0}/resourceGroups/{1}/providers/Microsoft.Network/virtualNetworks/{2}/subnets/{3}
var subnetParts = split(subnetId, '/')
// A subnet in another subscription can never hold this placement's container groups.
var sameSubscription = existingSubnet ? (toLower(subnetParts[2]) == toLower(subscription().subscriptionId)) : true
var checkedSubnetId = sameSubscription ? subnetId : fail('aciPlacements: subnetId ${subnetId} is in subscription ${subnetParts[2]}, but the placement is in ${subscription().subscriptionId}; Azure Container Instances needs the subnet and the container groups in the same subscription')
var joinResourceGroup = existingSubnet ? subnetParts[4] : resourceGroupName
var joinVnetName = existingSubnet ? subnetParts[8] : vnetName
var joinSubnetName = existingSubnet ? last(subnetParts) : 'aci-runners'
var suffix = uniqueString(subscription().id, resourceGroupName, location)

resource group 'Microsoft.Resources/resourceGroups@2024-03-01' = if (createResourceGroup) {
  name: resourceGroupName
  location: location
  tags: tags
}

module containerGroupRole 'aci-rbac.bicep' = if (grantContainerGroupRole) {
  name: take('${namePrefix}-aci-role-${suffix}', 64)
  scope: resourceGroup(resourceGroupName)
  params: {
    appPrincipalId: appPrincipalId
  }
  dependsOn: [
    group
  ]
}

module network 'aci-network.bicep' = if (createVnet) {
  name: take('${namePrefix}-aci-vnet-${suffix}', 64)
  scope: resourceGroup(resourceGroupName)
  params: {
    location: location
    tags: tags
    vnetName: vnetName
    addressPrefix: vnetAddressPrefix
    aciSubnetPrefix: aciSubnetPrefix
    natGatewayId: natGatewayId
    routeTableId: routeTableId
  }
  dependsOn: [
    group
  ]
}

module subnetJoin 'subnet-join.bicep' = if (createVnet || (existingSubnet && grantSubnetJoin)) {
  name: take('${namePrefix}-aci-join-${suffix}', 64)
  scope: resourceGroup(joinResourceGroup)
  params: {
    appPrincipalId: appPrincipalId
    vnetName: joinVnetName
    subnetName: joinSubnetName
  }
  dependsOn: [
    network
  ]
}

var placementSubnetId = createVnet ? network.outputs.aciSubnetId : checkedSubnetId

output location string = location
output subscriptionId string = subscription().subscriptionId
output resourceGroupName string = resourceGroupName
output subnetId string = placementSubnetId

@description('The placement as runners.toml keys.')
output entry object = union({
  location: location
  subscription_id: subscription().subscriptionId
  resource_group: resourceGroupName
}, hasSubnet ? { subnet_id: placementSubnetId } : {})

@description('The placement as a TOML inline table, for a pool\'s `placements` list.')
output toml string = '{ location = "${location}", subscription_id = "${subscription().subscriptionId}", resource_group = "${resourceGroupName}"${hasSubnet ? ', subnet_id = "${placementSubnetId}"' : ''} }'
