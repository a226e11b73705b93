// Lets the Function App's identity join container groups to one subnet: the same
// two-action custom role as rbac.bicep (same name and content, so the two coincide
// when they land in the same resource group), assigned on that subnet only.
// Deployed in the subnet's resource group; used for ACI placements (aci-placement.bicep).

@description('Principal (object) id of the Function App user-assigned identity.')
param appPrincipalId string

@description('Virtual network that holds the subnet, in this resource group.')
param vnetName string

@description('Subnet (delegated to Microsoft.ContainerInstance/containerGroups) the container groups join.')
param subnetName string

resource vnet 'Microsoft.Network/virtualNetworks@2024-05-01' existing = {
  name: vnetName
}

resource subnet 'Microsoft.Network/virtualNetworks/subnets@2024-05-01' existing = {
  parent: vnet
  name: subnetName
}

resource subnetJoinRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(resourceGroup().id, 'runner-dispatch-subnet-join')
  properties: {
    roleName: 'runner-dispatch subnet join (${uniqueString(resourceGroup().id)})'
    description: 'Join container groups to a subnet (runner-dispatch).'
    type: 'CustomRole'
    assignableScopes: [
      resourceGroup().id
    ]
    permissions: [
      {
        actions: [
          'Microsoft.Network/virtualNetworks/subnets/read'
          'Microsoft.Network/virtualNetworks/subnets/join/action'
        ]
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
  }
}

resource subnetJoin 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(resourceGroup().id, vnetName, subnetName, appPrincipalId, 'subnet-join')
  scope: subnet
  properties: {
    // Custom roles are referenced by their subscription-level id.
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', subnetJoinRole.name)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}
