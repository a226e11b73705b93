// The VM lane (backend = "vm"): a subnet for runner VMs that reaches the internet only
// through a NAT gateway (the VMs get no public IP), and the Function App identity's rights
// to create and delete those VMs in this resource group: a custom role with only the
// actions the VM backend calls plus what ARM checks for them (the NIC and OS disk the
// Compute provider creates from the VM body, the gallery image it reads), and subnet join
// on the VM subnet. Assigning the runner identity to VMs uses the Managed Identity Operator
// grant rbac.bicep already makes. docs/vm-lane.md says why each piece is there.

@description('Azure region of the VNet and NAT gateway (the VMs go where the pools say).')
param location string

@description('Tags applied to every resource.')
param tags object = {}

@description('Principal (object) id of the Function App user-assigned identity.')
param appPrincipalId string

@description('Name of the VM lane virtual network.')
param vnetName string

@description('Address space of the VM lane virtual network.')
param vnetAddressPrefix string = '10.41.0.0/16'

@description('The runner VM subnet: one address per concurrent VM.')
param subnetPrefix string = '10.41.0.0/22'

var subnetName = 'vm-runners'

resource natIp 'Microsoft.Network/publicIPAddresses@2024-05-01' = {
  name: '${vnetName}-nat-ip'
  location: location
  tags: tags
  sku: {
    name: 'Standard'
  }
  properties: {
    publicIPAllocationMethod: 'Static'
    publicIPAddressVersion: 'IPv4'
  }
}

resource nat 'Microsoft.Network/natGateways@2024-05-01' = {
  name: '${vnetName}-nat'
  location: location
  tags: tags
  sku: {
    name: 'Standard'
  }
  properties: {
    idleTimeoutInMinutes: 10
    publicIpAddresses: [
      {
        id: natIp.id
      }
    ]
  }
}

// Nothing comes in from outside the VNet: runners only call out (GitHub, registries).
resource nsg 'Microsoft.Network/networkSecurityGroups@2024-05-01' = {
  name: '${vnetName}-nsg'
  location: location
  tags: tags
  properties: {
    securityRules: [
      {
        name: 'deny-inbound-from-internet'
        properties: {
          priority: 4000
          direction: 'Inbound'
          access: 'Deny'
          protocol: '*'
          sourceAddressPrefix: 'Internet'
          sourcePortRange: '*'
          destinationAddressPrefix: '*'
          destinationPortRange: '*'
        }
      }
    ]
  }
}

resource vnet 'Microsoft.Network/virtualNetworks@2024-05-01' = {
  name: vnetName
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        vnetAddressPrefix
      ]
    }
    subnets: [
      {
        name: subnetName
        properties: {
          addressPrefix: subnetPrefix
          natGateway: {
            id: nat.id
          }
          networkSecurityGroup: {
            id: nsg.id
          }
          defaultOutboundAccess: false
        }
      }
    ]
  }
}

resource vmRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(resourceGroup().id, 'runner-dispatch-virtual-machines')
  properties: {
    roleName: 'runner-dispatch virtual machines (${uniqueString(resourceGroup().id)})'
    description: 'Create, read and delete single-use runner VMs with their NIC and OS disk, read gallery images (runner-dispatch VM lane).'
    type: 'CustomRole'
    assignableScopes: [
      resourceGroup().id
    ]
    permissions: [
      {
        actions: [
          'Microsoft.Resources/subscriptions/resourceGroups/read'
          'Microsoft.Authorization/permissions/read'
          'Microsoft.Compute/virtualMachines/read'
          'Microsoft.Compute/virtualMachines/write'
          'Microsoft.Compute/virtualMachines/delete'
          'Microsoft.Compute/virtualMachines/instanceView/read'
          'Microsoft.Compute/disks/read'
          'Microsoft.Compute/disks/write'
          'Microsoft.Compute/disks/delete'
          'Microsoft.Compute/galleries/read'
          'Microsoft.Compute/galleries/images/read'
          'Microsoft.Compute/galleries/images/versions/read'
          'Microsoft.Network/networkInterfaces/read'
          'Microsoft.Network/networkInterfaces/write'
          'Microsoft.Network/networkInterfaces/delete'
          'Microsoft.Network/networkInterfaces/join/action'
        ]
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
  }
}

resource vmAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(resourceGroup().id, appPrincipalId, vmRole.name)
  properties: {
    // Custom roles are referenced by their subscription-level id.
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', vmRole.name)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Subnet join on the VM subnet only (the same two-action role as for ACI subnets).
module subnetJoin 'subnet-join.bicep' = {
  name: 'vm-lane-subnet-join'
  params: {
    appPrincipalId: appPrincipalId
    vnetName: vnet.name
    subnetName: subnetName
  }
}

@description('Use as `subnet_id` of a vm pool.')
output subnetId string = '${vnet.id}/subnets/${subnetName}'
output natPublicIp string = natIp.properties.ipAddress
